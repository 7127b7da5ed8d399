"""Workaround: invoke and expectReplies responses that botbuilder cannot send (a 500 instead of the answer).

Defects (botbuilder 4.17.1):
- `CloudAdapter.process` serialises an already-serialised `ExpectedReplies` dict again and answers every
  `deliveryMode: "expectReplies"` request with 500.
- An `adaptiveCard/action` invoke without a valid `Action.Execute` value makes `ActivityHandler` answer an
  `AdaptiveCardInvokeResponse` whose `value` is a Python `Exception`, which msrest cannot serialise (another 500).
Why this way: the app writes the body itself (`invoke_response_body`), and the bad invoke is answered as the Bot
Framework error it means: `{"statusCode": 400, "type": "application/vnd.microsoft.error", "value": {"code": ...,
"message": ...}}`.
Tests that fail without it:
- tests/test_compat.py::test_stock_expect_replies_serialisation_fails_on_the_dict_botbuilder_builds
- tests/test_compat.py::test_invoke_response_body_accepts_serialised_and_model_bodies
- tests/test_compat.py::test_a_malformed_adaptive_card_action_is_answered_as_a_serialisable_bot_framework_error
"""

from __future__ import annotations

from typing import Any

from botbuilder.core import InvokeResponse
from botbuilder.schema import AdaptiveCardInvokeResponse


def invoke_response_body(response: InvokeResponse) -> Any:
    """The JSON body of an invoke or expectReplies response, whether botbuilder serialised it already or not."""
    body = response.body
    if body is None or isinstance(body, dict | list | str | int | float | bool):
        return body
    if isinstance(body, AdaptiveCardInvokeResponse) and isinstance(body.value, Exception):
        return adaptive_card_error(body)
    serialize = getattr(body, "serialize", None)
    return serialize() if callable(serialize) else body


def adaptive_card_error(body: AdaptiveCardInvokeResponse) -> dict[str, Any]:
    """The Bot Framework error an `AdaptiveCardInvokeResponse` carrying a Python exception stands for."""
    args = [str(arg) for arg in getattr(body.value, "args", ())]
    code, message = (args[0], " ".join(args[1:])) if len(args) > 1 else ("BadRequest", " ".join(args))
    return {
        "statusCode": int(body.status_code or 400),
        "type": body.type or "application/vnd.microsoft.error",
        "value": {"code": code, "message": message or "invalid adaptiveCard/action invoke"},
    }


def serialisable_invoke_response(response: InvokeResponse | None) -> InvokeResponse | None:
    """`response` with an adaptive card error body made serialisable (this module); otherwise unchanged."""
    body = response.body if response is not None else None
    if response is not None and isinstance(body, AdaptiveCardInvokeResponse) and isinstance(body.value, Exception):
        return InvokeResponse(status=response.status, body=adaptive_card_error(body))
    return response
