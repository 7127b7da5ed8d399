"""Every PromQL query the weekly report runs, named by key, built from the catalog's metric names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from telemetry import catalog

SCRAPE_JOB = "chatbot"  # the job name in infra/prometheus/prometheus.yml; the alert rules select it too
MESSAGES_ROUTE = "/api/messages"


class Kind(StrEnum):
    RANGE = "range"  # /api/v1/query_range over the report's range, one point per step
    INSTANT = "instant"  # /api/v1/query at the end of the range
    SAMPLES = "samples"  # /api/v1/query of a range vector at the end: the raw samples, one per rule evaluation


@dataclass(frozen=True)
class Query:
    """One PromQL query. `$window` is replaced by the rate window, `$range` by the whole report range."""

    key: str
    kind: Kind
    expr: str
    description: str


_TURNS = catalog.TURNS.prometheus_name
_TURN_ERRORS = f'{_TURNS}{{{catalog.OUTCOME.replace(".", "_")}="{catalog.OUTCOME_ERROR}"}}'
_HTTP = catalog.HTTP_SERVER_DURATION.prometheus_name
_ROUTE = f'{catalog.HTTP_ROUTE.replace(".", "_")}="{MESSAGES_ROUTE}"'
_REQUESTS = f"{_HTTP}_count{{{_ROUTE}}}"
_REQUESTS_5XX = f'{_HTTP}_count{{{_ROUTE}, {catalog.HTTP_STATUS.replace(".", "_")}=~"5.."}}'
_BUCKETS = f"{_HTTP}_bucket{{{_ROUTE}}}"
_ANSWERS = catalog.KNOWLEDGE_ANSWERS.prometheus_name
_FALLBACKS = catalog.KNOWLEDGE_FALLBACKS.prometheus_name
_RECEIVED = catalog.MESSAGES_RECEIVED.prometheus_name
_UP = f'up{{job="{SCRAPE_JOB}"}}'
# The language model (docs/genai.md): absent without one, and the report says so.
_MODEL = catalog.GEN_AI_REQUEST_MODEL.replace(".", "_")
_GENAI_CALLS = f"{catalog.GENAI_OPERATION_DURATION.prometheus_name}_count"
_ERROR_TYPE = catalog.ERROR_TYPE.replace(".", "_")
_GENAI_FAILED = f'{_GENAI_CALLS}{{{_ERROR_TYPE}!="", {_ERROR_TYPE}!="cancelled"}}'
_GENAI_TOKENS = f"{catalog.GENAI_TOKEN_USAGE.prometheus_name}_sum"
_TOKEN_TYPE = catalog.GEN_AI_TOKEN_TYPE.replace(".", "_")
_RATING = catalog.ANSWER_RATINGS.prometheus_name
_SOURCE = catalog.ANSWER_SOURCE.replace(".", "_")
_REJECTION = catalog.REJECTION_REASON.replace(".", "_")
_AUTH_FAILURES = f'{catalog.REQUESTS_REJECTED.prometheus_name}{{{_REJECTION}="{catalog.REJECT_UNAUTHORIZED}"}}'
AUTH_REASON_LABEL = catalog.AUTH_FAILURE.replace(".", "_")


def _quantile(q: float) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({_BUCKETS}[$window])))"


QUERIES: tuple[Query, ...] = (
    Query("turns_per_second", Kind.RANGE, f"sum(rate({_TURNS}[$window]))", "Turns per second, all instances"),
    Query(
        "requests_per_second",
        Kind.RANGE,
        f"sum(rate({_REQUESTS}[$window]))",
        f"HTTP requests to {MESSAGES_ROUTE} per second",
    ),
    Query(
        "turn_error_ratio",
        Kind.RANGE,
        f"(sum(rate({_TURN_ERRORS}[$window])) or vector(0)) / sum(rate({_TURNS}[$window]))",
        "Share of turns that ended with an unhandled exception",
    ),
    Query(
        "http_5xx_ratio",
        Kind.RANGE,
        f"(sum(rate({_REQUESTS_5XX}[$window])) or vector(0)) / sum(rate({_REQUESTS}[$window]))",
        f"Share of requests to {MESSAGES_ROUTE} answered with a 5xx status",
    ),
    Query("latency_p50", Kind.RANGE, _quantile(0.5), f"Median response time of {MESSAGES_ROUTE}"),
    Query("latency_p95", Kind.RANGE, _quantile(0.95), f"95th percentile response time of {MESSAGES_ROUTE}"),
    Query("latency_p99", Kind.RANGE, _quantile(0.99), f"99th percentile response time of {MESSAGES_ROUTE}"),
    Query(
        "answers_per_second",
        Kind.RANGE,
        f"sum(rate({_ANSWERS}[$window]))",
        "Questions answered from the knowledge base per second",
    ),
    Query(
        "fallbacks_per_second",
        Kind.RANGE,
        f"sum(rate({_FALLBACKS}[$window]))",
        "Messages the bot did not understand per second",
    ),
    Query(
        "fallback_ratio",
        Kind.RANGE,
        f"(sum(rate({_FALLBACKS}[$window])) or vector(0)) / sum(rate({_RECEIVED}[$window]))",
        "Share of received messages the bot did not understand",
    ),
    Query(
        "alerts_firing",
        Kind.SAMPLES,
        'ALERTS{alertstate="firing"}[$range]',
        "Every evaluation that found an alert firing (Prometheus' own alert state)",
    ),
    Query(
        "alerts_for_state",
        Kind.SAMPLES,
        "ALERTS_FOR_STATE[$range]",
        "When each active alert became active (its value): tells one episode from the next",
    ),
    Query(
        "latency_p95_range",
        Kind.INSTANT,
        f"histogram_quantile(0.95, sum by (le) (increase({_BUCKETS}[$range])))",
        f"95th percentile response time of {MESSAGES_ROUTE} over the whole range",
    ),
    Query("total_turns", Kind.INSTANT, f"sum(increase({_TURNS}[$range]))", "Turns in the range"),
    Query("failed_turns", Kind.INSTANT, f"sum(increase({_TURN_ERRORS}[$range]))", "Failed turns in the range"),
    Query("total_requests", Kind.INSTANT, f"sum(increase({_REQUESTS}[$range]))", "Requests in the range"),
    Query("total_answers", Kind.INSTANT, f"sum(increase({_ANSWERS}[$range]))", "Knowledge answers in the range"),
    Query("total_fallbacks", Kind.INSTANT, f"sum(increase({_FALLBACKS}[$range]))", "Fallbacks in the range"),
    Query(
        "availability",
        Kind.INSTANT,
        f"avg(avg_over_time({_UP}[$range]))",
        "Share of scrapes that succeeded, averaged over the instances",
    ),
    Query(
        "auth_failures_by_reason",
        Kind.INSTANT,
        f"sum by ({AUTH_REASON_LABEL}) (increase({_AUTH_FAILURES}[$range]))",
        "Requests that failed authentication (401) in the range, by reason",
    ),
    Query(
        "genai_calls_by_model",
        Kind.INSTANT,
        f"sum by ({_MODEL}) (increase({_GENAI_CALLS}[$range]))",
        "Calls to the language model in the range, by model",
    ),
    Query(
        "genai_failed_by_model",
        Kind.INSTANT,
        f"sum by ({_MODEL}) (increase({_GENAI_FAILED}[$range]))",
        "Failed calls to the language model (any error.type but cancelled) in the range, by model",
    ),
    Query(
        "genai_tokens_by_model",
        Kind.INSTANT,
        f"sum by ({_MODEL}, {_TOKEN_TYPE}) (increase({_GENAI_TOKENS}[$range]))",
        "Tokens the language model reported in the range, by model and type (input, output)",
    ),
    Query(
        "ratings_by_source",
        Kind.INSTANT,
        f"sum by ({_SOURCE}) (increase({_RATING}_sum[$range]))"
        f" / sum by ({_SOURCE}) (increase({_RATING}_count[$range]))",
        "Average rating (1-5) in the range, by the source of the answer rated",
    ),
    Query("instances", Kind.INSTANT, f"count(max_over_time({_UP}[$range]))", "Bot instances scraped in the range"),
)
QUERIES_BY_KEY = {query.key: query for query in QUERIES}
