"""The botbuilder 4.17.1 defects bot/compat.py works around are still there, and the workarounds remove them.

When a botbuilder upgrade fixes a defect, the `stock_*` test here fails: the workaround can then go.
"""

from __future__ import annotations

import aiohttp
import pytest
from botbuilder.core import InvokeResponse, serializer_helper
from botbuilder.schema import Activity, ExpectedReplies
from msrest.universal_http.requests import ClientRetryPolicy

from bot import compat
from bot.adapter import ChatAdapter
from bot.settings import Settings

STOCK_SAFE_CODES = [i for i in range(500) if i != 408] + [501, 505]


def test_stock_expect_replies_serialisation_fails_on_the_dict_botbuilder_builds() -> None:
    body = ExpectedReplies(activities=[Activity(type="message", text="hi")]).serialize()
    with pytest.raises(AttributeError, match="is_xml_model"):
        serializer_helper(body)


def test_invoke_response_body_accepts_serialised_and_model_bodies() -> None:
    replies = ExpectedReplies(activities=[Activity(type="message", text="hi")])
    expected = replies.serialize()
    assert compat.invoke_response_body(InvokeResponse(status=200, body=expected)) == expected
    assert compat.invoke_response_body(InvokeResponse(status=200, body=replies)) == expected
    assert compat.invoke_response_body(InvokeResponse(status=501)) is None


async def test_creating_the_adapter_makes_msrest_retry_policies_cheap_without_changing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ClientRetryPolicy, "safe_codes", list(STOCK_SAFE_CODES))
    async with aiohttp.ClientSession() as session:
        ChatAdapter(Settings(), session)
    assert isinstance(ClientRetryPolicy.safe_codes, frozenset)
    assert ClientRetryPolicy().policy.status_forcelist == [i for i in range(999) if i not in STOCK_SAFE_CODES]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"type": 7}, "'type'"),
        ({"type": "message", "conversation": "c"}, "'conversation'"),
        ({"type": "message", "from": {"id": 5}}, "'from.id'"),
        ({"type": "message", "timestamp": "not a time"}, "not a valid Activity"),
        ({"text": "no type"}, "no 'type'"),
    ],
)
def test_malformed_activities_become_value_errors_naming_the_problem(body: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        compat.parse_activity(body)


async def test_authentication_failures_of_any_kind_become_permission_errors() -> None:
    class Exploding:
        async def authenticate_request(self, activity: Activity, header: str) -> None:
            raise KeyError("kid")  # what the JWT code raises for some malformed tokens

    with pytest.raises(PermissionError, match="KeyError"):
        await compat.authenticate_or_refuse(Exploding(), Activity(type="message"), "Bearer x")
