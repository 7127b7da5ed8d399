"""Workaround: a malformed Authorization header is a 500, and a refused one does not say why.

Defect (botbuilder 4.17.1): the JWT code raises arbitrary exceptions for malformed headers (a 500), and botbuilder
says why it refused a token only in free-text messages (and returns no identity at all for a token of another
issuer).
Why this way: any failure to authenticate becomes `AuthenticationRefused`, a `PermissionError` (a 401) carrying one of
the bounded reasons of `bot.vocabulary.AUTH_FAILURES`, read from the header, the JWT library's exception class and
those messages; anything unrecognised is `other`.
Tests that fail without it:
- tests/test_compat.py::test_authentication_failures_of_any_kind_become_permission_errors
- tests/test_auth.py::test_invalid_tokens_get_401_counted_by_why
"""

from __future__ import annotations

import jwt
from botbuilder.schema import Activity
from botframework.connector.auth import AuthenticateRequestResult, BotFrameworkAuthentication

from bot import vocabulary


class AuthenticationRefused(PermissionError):
    """A request that failed authentication, with the bounded reason it is counted under (vocabulary.AUTH_FAILURES)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


async def authenticate_or_refuse(
    authentication: BotFrameworkAuthentication, activity: Activity, auth_header: str
) -> AuthenticateRequestResult:
    try:
        return await authentication.authenticate_request(activity, auth_header)
    except Exception as error:  # malformed tokens raise whatever the JWT library raises
        reason = authentication_failure_reason(auth_header, error)
        message = str(error) if isinstance(error, PermissionError) and str(error) else type(error).__name__
        raise AuthenticationRefused(f"authentication failed ({reason}): {message}", reason) from error


_JWT_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, vocabulary.AUTH_EXPIRED),
    (jwt.InvalidAudienceError, vocabulary.AUTH_WRONG_AUDIENCE),
    (jwt.InvalidIssuerError, vocabulary.AUTH_WRONG_ISSUER),
    (jwt.InvalidSignatureError, vocabulary.AUTH_BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, vocabulary.AUTH_BAD_SIGNATURE),
    (jwt.InvalidKeyError, vocabulary.AUTH_BAD_SIGNATURE),
    (jwt.DecodeError, vocabulary.AUTH_MALFORMED),
)
# Fragments of botbuilder 4.17.1's messages (channel, emulator, skill and parameterized validation), first match wins.
_MESSAGE_FAILURES: tuple[tuple[str, str], ...] = (
    ("not supplied", vocabulary.AUTH_MISSING),
    ("auth_header is null", vocabulary.AUTH_MISSING),
    ("serviceurl", vocabulary.AUTH_OTHER_SERVICE_URL),
    ("service_url", vocabulary.AUTH_OTHER_SERVICE_URL),
    ("appid", vocabulary.AUTH_WRONG_AUDIENCE),
    ("app_id", vocabulary.AUTH_WRONG_AUDIENCE),
    ("audience", vocabulary.AUTH_WRONG_AUDIENCE),
    ("'aud'", vocabulary.AUTH_WRONG_AUDIENCE),
    ("issuer", vocabulary.AUTH_WRONG_ISSUER),
    ("'iss'", vocabulary.AUTH_WRONG_ISSUER),
    ("signing algorithm", vocabulary.AUTH_BAD_SIGNATURE),
    # The token names a signing key the metadata endpoint does not publish (botbuilder trips over the missing key).
    ("attribute 'endorsements'", vocabulary.AUTH_BAD_SIGNATURE),
    # The token extractor returns no identity, without a word, for a well-formed Bearer token of a foreign issuer.
    ("identity missing", vocabulary.AUTH_WRONG_ISSUER),
    ("no valid identity", vocabulary.AUTH_WRONG_ISSUER),
    ("invalid identity", vocabulary.AUTH_WRONG_ISSUER),
    ("not authenticated", vocabulary.AUTH_WRONG_ISSUER),
)


def _raised_in(error: BaseException, function: str) -> bool:
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_code.co_name == function


def authentication_failure_reason(auth_header: str | None, error: BaseException) -> str:
    """Why a request failed authentication, as one of vocabulary.AUTH_FAILURES."""
    if not auth_header or not auth_header.strip():
        return vocabulary.AUTH_MISSING
    scheme, _, token = auth_header.partition(" ")
    try:
        if scheme != "Bearer" or not token or " " in token:
            raise jwt.DecodeError("not a Bearer token")
        jwt.get_unverified_header(token)
        jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return vocabulary.AUTH_MALFORMED
    cause: BaseException | None = error
    while cause is not None:
        for kind, reason in _JWT_FAILURES:
            if isinstance(cause, kind):
                return reason
        cause = cause.__cause__ or cause.__context__
    if _raised_in(error, "_find"):
        # botbuilder's key lookup indexes an empty list when the token names a key the endpoint does not publish.
        return vocabulary.AUTH_BAD_SIGNATURE
    message = str(error).lower()
    for fragment, reason in _MESSAGE_FAILURES:
        if fragment in message:
            return reason
    return vocabulary.AUTH_OTHER
