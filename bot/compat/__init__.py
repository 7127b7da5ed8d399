"""Workarounds for defects of botbuilder-python 4.17.1, one module each. Each module's docstring says the defect, why
it is worked around that way, and the test that fails without it (mostly tests/test_compat.py, whose `stock_*` tests
fail once an upgrade fixes a defect: the workaround can then go).

- `msrest_retry_policy`: msrest rebuilds its retry status list quadratically for every client.
- `invoke_responses`: expectReplies and bad adaptiveCard/action invokes answered with 500.
- `channel_replies` (+ `reply_retry`): replies sent synchronously, one connection each, 100 s timeout.
- `authentication`: malformed Authorization headers are a 500; refusals do not say why.
- `activity_parsing`: malformed activities are a 500 or accepted with wrong types.
- `client_cache`: new Bot Framework clients built for every turn.
- `openid_metadata`: signing keys fetched with a blocking call on the event loop.

Speed rewrites that fix no defect (schema codec, state fingerprint, activity copy) are in bot/fastpath/.
To add a workaround: a module here with that docstring, its `stock_*` and fixed tests in tests/test_compat.py, and
its installation in bot/adapter.py (patches) or the app (helpers).
"""

from __future__ import annotations

from bot.compat.activity_parsing import parse_activity
from bot.compat.authentication import AuthenticationRefused, authenticate_or_refuse, authentication_failure_reason
from bot.compat.channel_replies import AsyncChannelReplies, ChannelError, path_segment
from bot.compat.client_cache import CachingBotFrameworkAuthentication, app_id_of
from bot.compat.invoke_responses import adaptive_card_error, invoke_response_body, serialisable_invoke_response
from bot.compat.msrest_retry_policy import patch_msrest_retry_policy
from bot.compat.openid_metadata import patch_openid_metadata_fetch
from bot.compat.reply_retry import ReplyRetryPolicy, retry_after_seconds


def install() -> None:
    """Patch botbuilder's and msrest's code where a workaround has to (idempotent); the adapter calls it."""
    patch_msrest_retry_policy()
    patch_openid_metadata_fetch()


__all__ = [
    "AsyncChannelReplies",
    "AuthenticationRefused",
    "CachingBotFrameworkAuthentication",
    "ChannelError",
    "ReplyRetryPolicy",
    "adaptive_card_error",
    "app_id_of",
    "authenticate_or_refuse",
    "authentication_failure_reason",
    "install",
    "invoke_response_body",
    "parse_activity",
    "patch_msrest_retry_policy",
    "patch_openid_metadata_fetch",
    "path_segment",
    "retry_after_seconds",
    "serialisable_invoke_response",
]
