"""The bearer token for a bot that checks credentials: given as is, or obtained with the bot's app credentials.

It is fetched the way the Bot Framework Emulator does (client credentials at the Bot Framework tenant, scope
`{MicrosoftAppId}/.default`), so the bot validates it as an Emulator token.
"""

from __future__ import annotations

from collections.abc import Mapping

TOKEN_VARIABLE = "LOADTEST_BEARER_TOKEN"


def bearer_token(env: Mapping[str, str]) -> str | None:
    """LOADTEST_BEARER_TOKEN, else a token for MicrosoftAppId/MicrosoftAppPassword, else None (no credentials).

    Raises PermissionError when the identity platform refuses the credentials."""
    token = env.get(TOKEN_VARIABLE, "").strip()
    if token:
        return token.removeprefix("Bearer ").strip()
    app_id = env.get("MicrosoftAppId", "").strip()
    password = env.get("MicrosoftAppPassword", "")
    if not (app_id and password):
        return None
    from botframework.connector.auth import MicrosoftAppCredentials  # only needed against a deployed bot

    tenant = env.get("MicrosoftAppTenantId", "").strip() or None  # None: botframework.com
    credentials = MicrosoftAppCredentials(app_id, password, channel_auth_tenant=tenant, oauth_scope=app_id)
    return str(credentials.get_access_token())
