"""Every telemetry name the project emits: metrics, spans, events and attributes.

This module is the single source of truth. Instrumentation code, docs/telemetry.md, dashboards, alert rules and
queries use these names; tests prove they match. It holds data only and imports nothing heavy (the bot's
vocabulary comes from bot/vocabulary.py, data only too). It is longer than the other modules on purpose: one file
to read for every name, in sections (attributes, metrics, spans, events, then the language model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# The bot's own vocabulary (intents, rejection reasons, authentication failures, turn-state keys) is defined by the bot
# and only named here, as the values of the attributes below; new values are added in bot/vocabulary.py.
from bot.vocabulary import (  # noqa: F401 - re-exported: callers name them catalog.INTENT_HELP etc.
    ANSWER_DELIVERIES,
    ANSWER_SOURCES,
    AUTH_BAD_SIGNATURE,
    AUTH_EXPIRED,
    AUTH_FAILURES,
    AUTH_MALFORMED,
    AUTH_MISSING,
    AUTH_OTHER,
    AUTH_OTHER_SERVICE_URL,
    AUTH_WRONG_AUDIENCE,
    AUTH_WRONG_ISSUER,
    DELIVERED,
    DELIVERY_CANCELLED,
    DELIVERY_FAILED,
    DELIVERY_REFUSED,
    FAULT_DELAY_METRIC,
    FAULT_DELAY_RATIO_METRIC,
    FAULT_ERROR_RATIO_METRIC,
    INTENT_CANCEL,
    INTENT_DIALOG,
    INTENT_FALLBACK,
    INTENT_HELP,
    INTENT_KNOWLEDGE,
    INTENT_MODEL,
    INTENT_NONE,
    INTENT_WELCOME,
    INTENTS,
    KNOWLEDGE_ANSWER_EVENT,
    KNOWLEDGE_FALLBACK_EVENT,
    PROVIDER_AZURE_OPENAI,
    PROVIDER_OPENAI,
    REJECT_INVALID_JSON,
    REJECT_MEDIA_TYPE,
    REJECT_METHOD,
    REJECT_NOT_AN_ACTIVITY,
    REJECT_OVERLOADED,
    REJECT_TIMEOUT,
    REJECT_TOO_LARGE,
    REJECT_UNAUTHORIZED,
    REJECT_UNSUPPORTED_INVOKE,
    REJECTIONS,
    SOURCE_FALLBACK,
    SOURCE_KNOWLEDGE,
    SOURCE_MODEL,
    TURN_STATE_DIALOG,
    TURN_STATE_INTENT,
)


class Instrument(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"  # observable gauge
    UP_DOWN_COUNTER = "updowncounter"


@dataclass(frozen=True)
class Attribute:
    name: str
    description: str
    values: tuple[str, ...] = ()  # closed set when known; empty means "bounded by code, see description"


@dataclass(frozen=True)
class Metric:
    name: str
    instrument: Instrument
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def prometheus_name(self) -> str:
        """The series name opentelemetry-exporter-prometheus gives this metric (without _bucket/_sum/_count)."""
        base = self.name.replace(".", "_")
        suffix = _PROMETHEUS_UNIT_SUFFIX.get(self.unit, "")
        if suffix and not base.endswith("_" + suffix):
            base = f"{base}_{suffix}"
        if self.instrument is Instrument.COUNTER:
            base += "_total"
        return base


@dataclass(frozen=True)
class Event:
    name: str
    description: str
    properties: tuple[str, ...] = field(default_factory=tuple)


# Units in UCUM; annotations in braces are dropped by the Prometheus exporter.
_PROMETHEUS_UNIT_SUFFIX = {"s": "seconds", "By": "bytes"}

# Seconds, from a few milliseconds to the 30 s a channel waits; 2 s is a boundary because it is the alert threshold.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
)

INSTRUMENTATION_SCOPE = "otel_chatbot"

# ---- attributes -------------------------------------------------------------------------------------------------
CHANNEL = "bot.channel"
ACTIVITY_TYPE = "bot.activity.type"
LOCALE = "bot.locale"
INTENT = "bot.intent"
OUTCOME = "bot.turn.outcome"
REPLIES = "bot.turn.replies"
DIALOG_ID = "bot.dialog.id"
DIALOG_STEP = "bot.dialog.step"
KNOWLEDGE_TOPIC = "bot.knowledge.topic"
CONVERSATION_HASH = "bot.conversation.hash"
USER_HASH = "bot.user.hash"
ACTIVITY_ID = "bot.activity.id"
MESSAGE_TEXT = "bot.message.text"
ENDUSER_PSEUDO_ID = "enduser.pseudo.id"  # semconv; Azure Monitor maps it to user_Id (we store the keyed hash)
ERROR_TYPE = "error.type"  # semconv
HTTP_METHOD = "http.request.method"  # semconv
HTTP_METHOD_ORIGINAL = "http.request.method_original"  # semconv: the method sent, when HTTP_METHOD is _OTHER
HTTP_ROUTE = "http.route"  # semconv
HTTP_STATUS = "http.response.status_code"  # semconv
URL_SCHEME = "url.scheme"  # semconv: http or https as the client used it (behind a trusted proxy: as forwarded)
SESSION_ID = "session.id"  # semconv; Azure Monitor maps it to session_Id (we store the conversation's keyed hash)
OPERATION_NAME = "ai.operation.name"  # Azure Monitor's operation_Name, copied from the turn to its other items
SAMPLE_RATE = "_MS.sampleRate"  # percentage of turns a kept trace stands for; Azure Monitor's itemCount = 100 / it
HTTP_RESEND_COUNT = "http.request.resend_count"  # semconv: ordinal of a resent request, on its CLIENT span
REJECTION_REASON = "bot.request.rejection"
AUTH_FAILURE = "bot.auth.failure"
USER_AGENT_SYNTHETIC_TYPE = "user_agent.synthetic.type"  # semconv; Azure Monitor sets ai.operation.syntheticSource
SYNTHETIC_TEST = "test"  # semconv value of user_agent.synthetic.type for synthetic tests (load tests, probes)
# The load test's User-Agent carries this product token; requests with it are marked synthetic.
LOADTEST_USER_AGENT = "otel-chatbot-loadtest"
COMPONENT_NAME = "otel.component.name"  # semconv: which exporter or batch processor
COMPONENT_TYPE = "otel.component.type"  # semconv: kind of batch processor

OUTCOME_SUCCESS = "success"
OUTCOME_ERROR = "error"

# error.type of a failed channel reply: these statuses as they are, any other status as _OTHER (bounded series).
KNOWN_REPLY_STATUSES = frozenset({400, 401, 403, 404, 405, 408, 409, 412, 413, 415, 429, 500, 501, 502, 503, 504})
ERROR_TYPE_OTHER = "_OTHER"

# Batch processors as the SDK names them (otel.component.type); each holds a bounded queue in front of one exporter.
PROCESSOR_SPANS = "batching_span_processor"
PROCESSOR_LOGS = "batching_log_processor"
# error.type of a span or log record a batch processor dropped: its queue was full (export is falling behind).
DROPPED_QUEUE_FULL = "queue_full"

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(CHANNEL, "Bot Framework channel id (emulator, msteams, webchat, directline, ...); unknown ids: other"),
    Attribute(ACTIVITY_TYPE, "Activity type (message, conversationUpdate, invoke, ...); unknown types: other"),
    Attribute(LOCALE, "Locale of the incoming activity when it is a language tag (en-US), else invalid"),
    Attribute(INTENT, "How the bot routed the turn", INTENTS),
    Attribute(OUTCOME, "Whether the turn finished without an unhandled exception", (OUTCOME_SUCCESS, OUTCOME_ERROR)),
    Attribute(REPLIES, "Number of activities the bot sent during the turn"),
    Attribute(DIALOG_ID, "Id of a botbuilder dialog (fixed by the bot's code)"),
    Attribute(DIALOG_STEP, "Name of a waterfall step (fixed by the bot's code)"),
    Attribute(KNOWLEDGE_TOPIC, "Id of the knowledge-base entry that answered (fixed by the shipped data file)"),
    Attribute(CONVERSATION_HASH, "Keyed hash of the conversation id; spans and events only, never metrics"),
    Attribute(USER_HASH, "Keyed hash of the user id; spans and events only, never metrics"),
    Attribute(ACTIVITY_ID, "Id of the incoming activity; spans and events only"),
    Attribute(MESSAGE_TEXT, "Message text after redaction; only exported when BOT_LOG_PERSONAL_INFORMATION=true"),
    Attribute(ENDUSER_PSEUDO_ID, "Keyed hash of the user id on the turn span (Application Insights user_Id)"),
    Attribute(
        ERROR_TYPE,
        "Exception class name, the HTTP status code of a failed request, or export_failed/exception on export counters",
    ),
    Attribute(HTTP_METHOD, "HTTP request method"),
    Attribute(HTTP_METHOD_ORIGINAL, "The method the client sent, when http.request.method is _OTHER (spans only)"),
    Attribute(HTTP_ROUTE, "Matched route template, e.g. /api/messages"),
    Attribute(HTTP_STATUS, "HTTP response status code"),
    Attribute(
        URL_SCHEME,
        "URI scheme the client used (http, https); behind a trusted proxy the forwarded one",
        ("http", "https"),
    ),
    Attribute(
        SESSION_ID, "Keyed hash of the conversation id on every item of a traced turn (Application Insights session_Id)"
    ),
    Attribute(
        OPERATION_NAME,
        "Name of the turn's request on every item of a traced turn (Application Insights operation_Name)",
    ),
    Attribute(
        SAMPLE_RATE,
        "Percentage of turns a kept trace stands for, on every sampled item (Application Insights itemCount)",
    ),
    Attribute(HTTP_RESEND_COUNT, "Which resend of a reply to the channel a request is (1 = first retry)"),
    Attribute(REJECTION_REASON, "Why a request was refused before reaching the bot", REJECTIONS),
    Attribute(
        USER_AGENT_SYNTHETIC_TYPE,
        "test on requests whose User-Agent names the load test, and on every item of their turns; absent otherwise",
        (SYNTHETIC_TEST,),
    ),
    Attribute(
        AUTH_FAILURE,
        "Why a request failed authentication; only on `unauthorized` rejections (unrecognised causes: other)",
        AUTH_FAILURES,
    ),
    Attribute(
        COMPONENT_NAME,
        "On export counters the exporter (azure_monitor, otlp); on processor metrics the batch processor instance, "
        "named by the SDK <otel.component.type>/<n> in the order the processors were created",
    ),
    Attribute(COMPONENT_TYPE, "Kind of SDK batch processor", (PROCESSOR_SPANS, PROCESSOR_LOGS)),
)

# ---- metrics ----------------------------------------------------------------------------------------------------
HTTP_SERVER_DURATION = Metric(
    "http.server.request.duration",
    Instrument.HISTOGRAM,
    "s",
    "Duration of HTTP server requests (OpenTelemetry HTTP semantic conventions)",
    (HTTP_METHOD, URL_SCHEME, HTTP_ROUTE, HTTP_STATUS, ERROR_TYPE, USER_AGENT_SYNTHETIC_TYPE),
    DURATION_BUCKETS,
)
TURNS = Metric(
    "bot.turns",
    Instrument.COUNTER,
    "{turn}",
    "Bot turns processed, one per incoming activity",
    (CHANNEL, ACTIVITY_TYPE, INTENT, OUTCOME),
)
TURN_DURATION = Metric(
    "bot.turn.duration",
    Instrument.HISTOGRAM,
    "s",
    "Time from receiving an activity to the end of the turn, replies included",
    (CHANNEL, ACTIVITY_TYPE, INTENT, OUTCOME),
    DURATION_BUCKETS,
)
MESSAGES_RECEIVED = Metric(
    "bot.messages.received",
    Instrument.COUNTER,
    "{message}",
    "Message activities received from users",
    (CHANNEL,),
)
MESSAGES_SENT = Metric(
    "bot.messages.sent",
    Instrument.COUNTER,
    "{message}",
    "Activities the bot sent, by activity type (message, trace, typing, ...)",
    (CHANNEL, ACTIVITY_TYPE),
)
ACTIVE_CONVERSATIONS = Metric(
    "bot.conversations.active",
    Instrument.GAUGE,
    "{conversation}",
    "Conversations with at least one turn in the last 5 minutes",
)
KNOWLEDGE_ANSWERS = Metric(
    "bot.knowledge.answers",
    Instrument.COUNTER,
    "{answer}",
    "Questions answered from the knowledge base",
    (CHANNEL, KNOWLEDGE_TOPIC),
)
KNOWLEDGE_FALLBACKS = Metric(
    "bot.knowledge.fallbacks",
    Instrument.COUNTER,
    "{turn}",
    "Messages the bot did not understand",
    (CHANNEL,),
)
DIALOGS_STARTED = Metric(
    "bot.dialogs.started", Instrument.COUNTER, "{dialog}", "Waterfall dialogs started", (DIALOG_ID,)
)
DIALOGS_COMPLETED = Metric(
    "bot.dialogs.completed", Instrument.COUNTER, "{dialog}", "Waterfall dialogs run to their end", (DIALOG_ID,)
)
DIALOGS_CANCELLED = Metric(
    "bot.dialogs.cancelled", Instrument.COUNTER, "{dialog}", "Waterfall dialogs cancelled", (DIALOG_ID,)
)
ERRORS = Metric(
    "bot.errors",
    Instrument.COUNTER,
    "{error}",
    "Unhandled exceptions in turns, by exception type",
    (CHANNEL, ERROR_TYPE),
)
CHANNEL_REPLY_DURATION = Metric(
    "bot.channel.reply.duration",
    Instrument.HISTOGRAM,
    "s",
    "Time to deliver the bot's activities of one send call to the channel (serviceUrl)",
    (CHANNEL, ERROR_TYPE),
    DURATION_BUCKETS,
)
CHANNEL_REPLY_RETRIES = Metric(
    "bot.channel.reply.retries",
    Instrument.COUNTER,
    "{retry}",
    "Replies sent to the channel again after a 429, a 502/503/504, a timeout or a dropped connection",
    (CHANNEL, ERROR_TYPE),
)
REQUESTS_REJECTED = Metric(
    "bot.requests.rejected",
    Instrument.COUNTER,
    "{request}",
    "Requests to /api/messages refused before reaching the bot (bad input or failed authentication)",
    (REJECTION_REASON, HTTP_STATUS, AUTH_FAILURE),
)
PROCESS_CPU_UTILIZATION = Metric(
    "process.cpu.utilization",
    Instrument.GAUGE,
    "1",
    "CPU time used by the process since the last collection, divided by elapsed time and CPU count (0..1)",
)
PROCESS_CPU_TIME = Metric(
    "process.cpu.time",
    Instrument.COUNTER,
    "s",
    "CPU seconds used by the process (user + system); its rate is the number of cores kept busy",
)
PROCESS_MEMORY_USAGE = Metric(
    "process.memory.usage",
    Instrument.GAUGE,
    "By",
    "Resident set size of the process",
)

EXPORTED_SPANS = Metric(
    "otel.sdk.exporter.span.exported",
    Instrument.COUNTER,
    "{span}",
    "Spans handed to an exporter; with error.type when the export failed (they are retried from disk or lost)",
    (COMPONENT_NAME, ERROR_TYPE),
)
EXPORTED_LOGS = Metric(
    "otel.sdk.exporter.log.exported",
    Instrument.COUNTER,
    "{log_record}",
    "Log records (and custom events) handed to an exporter; with error.type when the export failed",
    (COMPONENT_NAME, ERROR_TYPE),
)
EXPORTED_METRIC_POINTS = Metric(
    "otel.sdk.exporter.metric_data_point.exported",
    Instrument.COUNTER,
    "{data_point}",
    "Metric data points handed to a push exporter; with error.type when the export failed",
    (COMPONENT_NAME, ERROR_TYPE),
)
_PROCESSOR_ATTRIBUTES = (COMPONENT_TYPE, COMPONENT_NAME)
PROCESSED_SPANS = Metric(
    "otel.sdk.processor.span.processed",
    Instrument.COUNTER,
    "{span}",
    "Spans a batch processor handed to its exporter; error.type=queue_full counts spans dropped because the "
    "queue was full",
    (*_PROCESSOR_ATTRIBUTES, ERROR_TYPE),
)
PROCESSED_LOGS = Metric(
    "otel.sdk.processor.log.processed",
    Instrument.COUNTER,
    "{log_record}",
    "Log records a batch processor handed to its exporter; error.type=queue_full counts dropped records",
    (*_PROCESSOR_ATTRIBUTES, ERROR_TYPE),
)
QUEUED_SPANS = Metric(
    "otel.sdk.processor.span.queue.size",
    Instrument.UP_DOWN_COUNTER,
    "{span}",
    "Spans waiting in a batch processor's queue",
    _PROCESSOR_ATTRIBUTES,
)
QUEUE_CAPACITY_SPANS = Metric(
    "otel.sdk.processor.span.queue.capacity",
    Instrument.UP_DOWN_COUNTER,
    "{span}",
    "Most spans a batch processor's queue holds (OTEL_BSP_MAX_QUEUE_SIZE)",
    _PROCESSOR_ATTRIBUTES,
)
QUEUED_LOGS = Metric(
    "otel.sdk.processor.log.queue.size",
    Instrument.UP_DOWN_COUNTER,
    "{log}",
    "Log records waiting in a batch processor's queue",
    _PROCESSOR_ATTRIBUTES,
)
QUEUE_CAPACITY_LOGS = Metric(
    "otel.sdk.processor.log.queue.capacity",
    Instrument.UP_DOWN_COUNTER,
    "{log_record}",
    "Most log records a batch processor's queue holds (OTEL_BLRP_MAX_QUEUE_SIZE)",
    _PROCESSOR_ATTRIBUTES,
)
FAULT_ERROR_RATIO = Metric(
    FAULT_ERROR_RATIO_METRIC,
    Instrument.GAUGE,
    "1",
    "Share of message turns the fault injection makes fail (0 = off; BOT_FAULT_ERROR_RATIO)",
)
FAULT_DELAY_RATIO = Metric(
    FAULT_DELAY_RATIO_METRIC,
    Instrument.GAUGE,
    "1",
    "Share of message turns the fault injection slows down (0 = off; BOT_FAULT_DELAY_RATIO)",
)
FAULT_DELAY = Metric(
    FAULT_DELAY_METRIC,
    Instrument.GAUGE,
    "s",
    "Delay the fault injection adds to a slowed turn (BOT_FAULT_DELAY_SECONDS)",
)

METRICS: tuple[Metric, ...] = (
    HTTP_SERVER_DURATION,
    TURNS,
    TURN_DURATION,
    MESSAGES_RECEIVED,
    MESSAGES_SENT,
    ACTIVE_CONVERSATIONS,
    KNOWLEDGE_ANSWERS,
    KNOWLEDGE_FALLBACKS,
    DIALOGS_STARTED,
    DIALOGS_COMPLETED,
    DIALOGS_CANCELLED,
    ERRORS,
    CHANNEL_REPLY_DURATION,
    CHANNEL_REPLY_RETRIES,
    REQUESTS_REJECTED,
    PROCESS_CPU_UTILIZATION,
    PROCESS_CPU_TIME,
    PROCESS_MEMORY_USAGE,
    EXPORTED_SPANS,
    EXPORTED_LOGS,
    EXPORTED_METRIC_POINTS,
    PROCESSED_SPANS,
    PROCESSED_LOGS,
    QUEUED_SPANS,
    QUEUE_CAPACITY_SPANS,
    QUEUED_LOGS,
    QUEUE_CAPACITY_LOGS,
    FAULT_ERROR_RATIO,
    FAULT_DELAY_RATIO,
    FAULT_DELAY,
)

# ---- series only the worker supervisor exposes (`python -m bot --workers N`) ---------------------------------------
WORKER = "worker"  # label the supervisor adds to every worker's series: the worker's index, 0..N-1
WORKERS_UNREACHABLE = Metric(
    "bot.workers.unreachable",
    Instrument.GAUGE,
    "{worker}",
    "Worker processes the supervisor's last scrape could not reach",
)
WORKERS_HUNG = Metric(
    "bot.workers.hung",
    Instrument.COUNTER,
    "{worker}",
    "Worker processes the supervisor killed (and restarted) because their event loop stopped answering its probe",
)
SUPERVISOR_METRICS: tuple[Metric, ...] = (WORKERS_UNREACHABLE, WORKERS_HUNG)

# Component names of the exporters whose exports are counted.
EXPORTER_AZURE_MONITOR = "azure_monitor"
EXPORTER_OTLP = "otlp"

# ---- spans ------------------------------------------------------------------------------------------------------
SPAN_MESSAGES_REQUEST = "POST /api/messages"  # SERVER span, "{method} {route}" per HTTP semantic conventions
SPAN_TURN = "bot.turn"  # INTERNAL span, only for turns that arrive without an HTTP request (proactive, tests)
SPAN_REPLY = "POST"  # CLIENT span, one per activity a traced turn sends to serviceUrl (botframework.py)
SPAN_EVENT_DIALOG_STEP = "dialog.step"  # span event on the turn span for every waterfall step

# ---- custom events (Application Insights customEvents; names compatible with Bot analytics queries) ----------------
EVENT_INITIALIZED = Event("Chatbot Initialized", "Emitted once when the bot starts", ("service.version",))
EVENT_MESSAGE_RECEIVED = Event(
    "BotMessageReceived",
    "An activity arrived from a channel",
    ("channelId", "activityId", "activityType", "conversationId", "fromId", "locale", "text"),
)
EVENT_MESSAGE_SEND = Event(
    "BotMessageSend",
    "The bot sent an activity",
    ("channelId", "replyActivityId", "activityType", "conversationId", "recipientId", "locale", "text"),
)
EVENT_WATERFALL_START = Event("WaterfallStart", "A waterfall dialog started", ("DialogId", "InstanceId"))
EVENT_WATERFALL_STEP = Event("WaterfallStep", "A waterfall dialog ran a step", ("DialogId", "StepName", "InstanceId"))
EVENT_WATERFALL_COMPLETE = Event("WaterfallComplete", "A waterfall dialog ended normally", ("DialogId", "InstanceId"))
EVENT_WATERFALL_CANCEL = Event(
    "WaterfallCancel", "A waterfall dialog was cancelled", ("DialogId", "StepName", "InstanceId")
)
EVENT_KNOWLEDGE_ANSWER = Event(KNOWLEDGE_ANSWER_EVENT, "The knowledge base answered a question", ("topic",))
EVENT_KNOWLEDGE_FALLBACK = Event(KNOWLEDGE_FALLBACK_EVENT, "The bot did not understand a message", ())

EVENTS: tuple[Event, ...] = (
    EVENT_INITIALIZED,
    EVENT_MESSAGE_RECEIVED,
    EVENT_MESSAGE_SEND,
    EVENT_WATERFALL_START,
    EVENT_WATERFALL_STEP,
    EVENT_WATERFALL_COMPLETE,
    EVENT_WATERFALL_CANCEL,
    EVENT_KNOWLEDGE_ANSWER,
    EVENT_KNOWLEDGE_FALLBACK,
)

# ---- trace activity the bot sends on the emulator channel --------------------------------------------------------
TRACE_ACTIVITY_NAME = "otel_chatbot.turn"
TRACE_ACTIVITY_VALUE_TYPE = "https://opentelemetry.io/schemas/trace-context"

# ==== GenAI: language model answers (bot/answers, telemetry/genai.py, docs/genai.md) ================================

# Names of the OpenTelemetry GenAI semantic conventions (status Development) where they exist; bot.answer.* are ours.
# Kept apart from METRICS/ATTRIBUTES/EVENTS: these series exist only when a model is configured (tests/test_genai_*).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"  # we store the keyed hash of the channel's conversation id
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"  # opt-in (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"  # opt-in, as above
GEN_AI_EVALUATION_NAME = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL = "gen_ai.evaluation.score.label"
SERVER_ADDRESS = "server.address"  # semconv
SERVER_PORT = "server.port"  # semconv
ANSWER_SOURCE = "bot.answer.source"
ANSWER_DELIVERY = "bot.answer.delivery"
FEEDBACK_HAS_COMMENT = "bot.feedback.has_comment"

GEN_AI_OPERATION_CHAT = "chat"
TOKEN_INPUT = "input"
TOKEN_OUTPUT = "output"
EVALUATION_USER_RATING = "user_rating"  # gen_ai.evaluation.name of the feedback dialog's 1-5 rating
SCORE_LABELS = ("negative", "neutral", "positive")  # ratings 1-2, 3, 4-5
# error.type of a model call: the HTTP status the server answered, or one of these (else a qualified exception type).
GEN_AI_ERRORS = ("timeout", "connection_error", "empty_answer", "cancelled")

GENAI_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(GEN_AI_OPERATION_NAME, "The GenAI operation", (GEN_AI_OPERATION_CHAT,)),
    Attribute(GEN_AI_PROVIDER_NAME, "Who serves the model", (PROVIDER_OPENAI, PROVIDER_AZURE_OPENAI)),
    Attribute(GEN_AI_REQUEST_MODEL, "Model (OPENAI_MODEL) or Azure deployment (AZURE_OPENAI_DEPLOYMENT) asked"),
    Attribute(GEN_AI_REQUEST_MAX_TOKENS, "Longest answer asked for, tokens (spans only)"),
    Attribute(GEN_AI_RESPONSE_MODEL, "Model that answered, as the server names it"),
    Attribute(GEN_AI_RESPONSE_ID, "Id of the completion (spans and evaluation events only)"),
    Attribute(GEN_AI_RESPONSE_FINISH_REASONS, "Why the model stopped, one per choice (spans only)"),
    Attribute(GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, "Seconds from the request to the first chunk (spans only)"),
    Attribute(GEN_AI_USAGE_INPUT_TOKENS, "Prompt tokens the server reported (spans only)"),
    Attribute(GEN_AI_USAGE_OUTPUT_TOKENS, "Completion tokens the server reported (spans only)"),
    Attribute(GEN_AI_CONVERSATION_ID, "Keyed hash of the conversation id (spans only, as bot.conversation.hash)"),
    Attribute(GEN_AI_TOKEN_TYPE, "Which tokens a token.usage measurement counts", (TOKEN_INPUT, TOKEN_OUTPUT)),
    Attribute(GEN_AI_INPUT_MESSAGES, "Prompt as JSON, redacted; only with content capture opted in (spans only)"),
    Attribute(GEN_AI_OUTPUT_MESSAGES, "Answer as JSON, redacted; only with content capture opted in (spans only)"),
    Attribute(GEN_AI_EVALUATION_NAME, "What was evaluated", (EVALUATION_USER_RATING,)),
    Attribute(GEN_AI_EVALUATION_SCORE_VALUE, "The user's rating, 1-5 (events only)"),
    Attribute(GEN_AI_EVALUATION_SCORE_LABEL, "The rating as a label", SCORE_LABELS),
    Attribute(SERVER_ADDRESS, "Host of the model endpoint (spans only)"),
    Attribute(SERVER_PORT, "Port of the model endpoint (spans only)"),
    Attribute(ANSWER_SOURCE, "Where the bot's answer came from", ANSWER_SOURCES),
    Attribute(ANSWER_DELIVERY, "How an answer sent after its turn ended", ANSWER_DELIVERIES),
    Attribute(FEEDBACK_HAS_COMMENT, "Whether the rating came with a comment (events only)"),
)

# The GenAI conventions' advisory buckets: seconds doubling from 10 ms, tokens by powers of four.
GENAI_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
GENAI_TOKEN_BUCKETS: tuple[float, ...] = tuple(float(4**power) for power in range(14))  # 1 ... 67108864
RATING_BUCKETS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)

_GENAI_CALL = (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL)
GENAI_OPERATION_DURATION = Metric(
    "gen_ai.client.operation.duration",
    Instrument.HISTOGRAM,
    "s",
    "Duration of a model call, from the request to the last chunk (with error.type when it failed)",
    (*_GENAI_CALL, ERROR_TYPE),
    GENAI_DURATION_BUCKETS,
)
GENAI_TOKEN_USAGE = Metric(
    "gen_ai.client.token.usage",
    Instrument.HISTOGRAM,
    "{token}",
    "Tokens of a model call as the server reported them, by gen_ai.token.type (its sum is the tokens used)",
    (*_GENAI_CALL, GEN_AI_TOKEN_TYPE),
    GENAI_TOKEN_BUCKETS,
)
GENAI_TIME_TO_FIRST_CHUNK = Metric(
    "gen_ai.client.operation.time_to_first_chunk",
    Instrument.HISTOGRAM,
    "s",
    "Time from a streaming request to its first chunk with a choice (time to first token, seen by the client)",
    _GENAI_CALL,
    GENAI_DURATION_BUCKETS,
)
ANSWERS = Metric(
    "bot.answers",
    Instrument.COUNTER,
    "{answer}",
    "Answers to questions, by source (knowledge base, model, fallback); counted with a model configured",
    (CHANNEL, ANSWER_SOURCE),
)
ANSWER_RATINGS = Metric(
    "bot.answer.rating",
    Instrument.HISTOGRAM,
    "{rating}",
    "Ratings (1-5) of the feedback dialog, by the source of the answer rated",
    (ANSWER_SOURCE, GEN_AI_REQUEST_MODEL),
    RATING_BUCKETS,
)
DEFERRED_ANSWERS = Metric(
    "bot.answers.deferred",
    Instrument.COUNTER,
    "{answer}",
    "Model answers not ready within BOT_MODEL_PROACTIVE_AFTER_SECONDS, sent later as proactive messages, by outcome",
    (ANSWER_DELIVERY,),
)
GENAI_METRICS: tuple[Metric, ...] = (
    GENAI_OPERATION_DURATION,
    GENAI_TOKEN_USAGE,
    GENAI_TIME_TO_FIRST_CHUNK,
    ANSWERS,
    ANSWER_RATINGS,
    DEFERRED_ANSWERS,
)

GENAI_SPAN_CHAT = "chat {gen_ai.request.model}"  # CLIENT span of one model call, e.g. "chat gpt-4o-mini"
GENAI_SPAN_DEFERRED = "bot.answer.deferred"  # INTERNAL span delivering a late answer, linked to its turn
EVENT_EVALUATION = Event(
    "gen_ai.evaluation.result",
    "A rating of an answer, in the trace of the answer rated (log record event; Application Insights customEvents)",
    (
        GEN_AI_EVALUATION_NAME,
        GEN_AI_EVALUATION_SCORE_VALUE,
        GEN_AI_EVALUATION_SCORE_LABEL,
        GEN_AI_RESPONSE_ID,
        GEN_AI_REQUEST_MODEL,
        ANSWER_SOURCE,
        FEEDBACK_HAS_COMMENT,
    ),
)
GENAI_EVENTS: tuple[Event, ...] = (EVENT_EVALUATION,)

# ---- conversation state store (BOT_STATE_STORE; bot/storage) -------------------------------------------------------
STATE_STORE = "bot.state.store"
STATE_OPERATION = "bot.state.operation"
STATE_OUTCOME = "bot.state.outcome"
STATE_STORES = ("memory", "sqlite", "blob")  # bot.storage.STORES
STATE_OPERATIONS = ("read", "write", "delete", "create_container")
STATE_OUTCOMES = ("success", "not_found", "conflict", "error")  # bot.storage.OUTCOME_*
AZURE_NAMESPACE = "az.namespace"  # Azure SDK semantic conventions; Application Insights types the dependency by it
AZURE_NAMESPACE_STORAGE = "Microsoft.Storage"

ATTRIBUTES = (
    *ATTRIBUTES,
    Attribute(STATE_STORE, "Where conversation and user state live (BOT_STATE_STORE)", STATE_STORES),
    Attribute(
        STATE_OPERATION,
        "A call of the state store: read, write or delete one item (blob: one blob), or create the blob container",
        STATE_OPERATIONS,
    ),
    Attribute(
        STATE_OUTCOME,
        "How a state store call ended: not_found (an item never written), conflict (stale e-tag, HTTP 412/409), "
        "error (unreachable, refused, malformed)",
        STATE_OUTCOMES,
    ),
)

STATE_OPERATION_DURATION = Metric(
    "bot.state.operation.duration",
    Instrument.HISTOGRAM,
    "s",
    "Duration of each call of the conversation state store (a blob read, write or delete; memory and sqlite: a "
    "whole read or write)",
    (STATE_STORE, STATE_OPERATION, STATE_OUTCOME),
    DURATION_BUCKETS,
)
STATE_CONFLICTS = Metric(
    "bot.state.conflicts",
    Instrument.COUNTER,
    "{conflict}",
    "Writes refused because another turn changed the item since it was read (stale e-tag); the turn reran",
)
STATE_TURN_RERUNS = Metric(
    "bot.state.turn.reruns",
    Instrument.COUNTER,
    "{run}",
    "Turns run again on fresh state after a conflict (their held-back replies were dropped, not sent)",
)
STATE_REDELIVERIES = Metric(
    "bot.state.redeliveries",
    Instrument.COUNTER,
    "{activity}",
    "Activities delivered again (an id already answered in the conversation): acknowledged, not answered again",
)
STATE_METRICS: tuple[Metric, ...] = (
    STATE_OPERATION_DURATION,
    STATE_CONFLICTS,
    STATE_TURN_RERUNS,
    STATE_REDELIVERIES,
)
METRICS = (*METRICS, *STATE_METRICS)

# CLIENT span, one per call of the blob state store (memory and sqlite calls are measured, not traced)
SPAN_STATE_READ = "BlobStorage read"
SPAN_STATE_WRITE = "BlobStorage write"
SPAN_STATE_DELETE = "BlobStorage delete"
SPAN_STATE_CREATE_CONTAINER = "BlobStorage create_container"
STATE_SPANS = {
    "read": SPAN_STATE_READ,
    "write": SPAN_STATE_WRITE,
    "delete": SPAN_STATE_DELETE,
    "create_container": SPAN_STATE_CREATE_CONTAINER,
}
