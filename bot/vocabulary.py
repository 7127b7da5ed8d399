"""The bot's own words: how it routed a turn (intents), why it refused a request, why authentication failed, and the
turn-state keys it records them under. Telemetry reads these (telemetry/catalog.py re-exports them as attribute
values); the bot owns them, so a new intent or refusal is added here or in the bot, never in telemetry.

Data only: no imports beyond the standard library, so telemetry's catalog can import it cheaply.
"""

from __future__ import annotations

import re

# ---- intents: how the bot routed a turn (the `bot.intent` attribute of turn metrics and spans) ------------------
INTENT_WELCOME = "welcome"
INTENT_HELP = "help"
INTENT_KNOWLEDGE = "knowledge"
INTENT_FALLBACK = "fallback"
INTENT_DIALOG = "dialog"
INTENT_CANCEL = "cancel"
INTENT_NONE = "none"
INTENT_MODEL = "model"  # a question the knowledge base could not answer, sent to the language model (bot/answers)
# The intents of the shipped bot, for documentation; the bot's routes (bot/routes.py) may register more.
INTENTS = (
    INTENT_WELCOME,
    INTENT_HELP,
    INTENT_KNOWLEDGE,
    INTENT_FALLBACK,
    INTENT_DIALOG,
    INTENT_CANCEL,
    INTENT_NONE,
    INTENT_MODEL,
)

# An intent becomes a metric label: a short fixed word, so that the series stay few and readable.
_INTENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_REGISTERED: set[str] = set(INTENTS)


def register_intent(name: str) -> str:
    """Declare an intent the bot may record; returns `name`. Telemetry reports an intent that was never registered
    as `none`, so the set of label values stays bounded by the bot's code."""
    if not _INTENT_NAME.fullmatch(name):
        raise ValueError(f"an intent is a short lower-case word ([a-z][a-z0-9_]{{0,31}}), got {name!r}")
    _REGISTERED.add(name)
    return name


def is_known_intent(name: str) -> bool:
    """Whether `name` was registered (read for every turn, so without copying the set)."""
    return name in _REGISTERED


def known_intents() -> frozenset[str]:
    """Every intent registered so far: the shipped ones and those of the routes created in this process."""
    return frozenset(_REGISTERED)


# ---- turn state keys the bot sets so that the turn telemetry can describe the turn ---------------------------------
TURN_STATE_INTENT = "otel_chatbot.intent"  # one of known_intents()
TURN_STATE_DIALOG = "otel_chatbot.dialog"  # id of the dialog the turn ran in, if any

# ---- request rejections (bad input); each is answered with a 4xx (or 501/503) and counted -------------------------
REJECT_INVALID_JSON = "invalid_json"
REJECT_NOT_AN_ACTIVITY = "not_an_activity"
REJECT_MEDIA_TYPE = "unsupported_media_type"
REJECT_TOO_LARGE = "body_too_large"
REJECT_UNAUTHORIZED = "unauthorized"
REJECT_METHOD = "method_not_allowed"
REJECT_OVERLOADED = "overloaded"
REJECT_TIMEOUT = "request_timeout"
REJECT_UNSUPPORTED_INVOKE = "unsupported_invoke"  # answered 501, as Bot Framework SDKs answer invokes they lack
REJECTIONS = (
    REJECT_INVALID_JSON,
    REJECT_NOT_AN_ACTIVITY,
    REJECT_MEDIA_TYPE,
    REJECT_TOO_LARGE,
    REJECT_UNAUTHORIZED,
    REJECT_METHOD,
    REJECT_OVERLOADED,
    REJECT_TIMEOUT,
    REJECT_UNSUPPORTED_INVOKE,
)

# ---- why a request failed authentication (its rejection is `unauthorized`) ----------------------------------------
# Anything botbuilder says that is not recognised is `other`, so the set stays bounded.
AUTH_MISSING = "missing"
AUTH_MALFORMED = "malformed"
AUTH_EXPIRED = "expired"
AUTH_WRONG_AUDIENCE = "wrong_audience"
AUTH_WRONG_ISSUER = "wrong_issuer"
AUTH_BAD_SIGNATURE = "bad_signature"
AUTH_OTHER_SERVICE_URL = "other_service_url"
AUTH_OTHER = "other"
AUTH_FAILURES = (
    AUTH_MISSING,
    AUTH_MALFORMED,
    AUTH_EXPIRED,
    AUTH_WRONG_AUDIENCE,
    AUTH_WRONG_ISSUER,
    AUTH_BAD_SIGNATURE,
    AUTH_OTHER_SERVICE_URL,
    AUTH_OTHER,
)

# ---- what the bot reports through its BotTelemetryClient (described in telemetry/catalog.py) ---------------------
KNOWLEDGE_ANSWER_EVENT = "KnowledgeAnswer"  # property: topic
KNOWLEDGE_FALLBACK_EVENT = "KnowledgeFallback"
FAULT_ERROR_RATIO_METRIC = "bot.faults.error_ratio"
FAULT_DELAY_RATIO_METRIC = "bot.faults.delay_ratio"
FAULT_DELAY_METRIC = "bot.faults.delay"

# ---- language model answers (bot/answers, docs/genai.md) -----------------------------------------------------------
# Where an answer came from (`bot.answer.source`).
SOURCE_KNOWLEDGE = "knowledge"
SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"
ANSWER_SOURCES = (SOURCE_KNOWLEDGE, SOURCE_MODEL, SOURCE_FALLBACK)
# How an answer sent after its turn ended went (`bot.answer.delivery`).
DELIVERED = "delivered"
DELIVERY_FAILED = "failed"  # the channel refused the proactive message or could not be reached
DELIVERY_CANCELLED = "cancelled"  # the bot shut down first
DELIVERY_REFUSED = "refused"  # too many answers pending already: the user got the fallback at once
ANSWER_DELIVERIES = (DELIVERED, DELIVERY_FAILED, DELIVERY_CANCELLED, DELIVERY_REFUSED)
# Who serves the model (`gen_ai.provider.name`, values of the GenAI semantic conventions).
PROVIDER_OPENAI = "openai"
PROVIDER_AZURE_OPENAI = "azure.ai.openai"
# The feedback dialog leaves its result here ({"rating": 1-5, "has_comment": bool}) when it ends, for the answer
# engine to record as an evaluation of the answer before the survey.
TURN_STATE_RATING = "otel_chatbot.rating"
