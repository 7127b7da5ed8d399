"""Personal data sent through real conversations, with text export opted in, never leaves the process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry import privacy
from telemetry.privacy import RedactingLogProcessor, RedactingSpanProcessor, redact, redact_attributes, redact_uncached
from tests.support.botserver import RunningBot
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.pii import corpus, sentences

CORPUS = corpus()


def test_the_corpus_is_large_and_varied() -> None:
    assert sum(len(values) for values in CORPUS.values()) >= 200
    assert all(len(values) >= 20 for values in CORPUS.values())


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_redaction_recall_is_complete_for_every_kind(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    leaked = [value for value in CORPUS[kind] if value in redact(sentences(kind, value))]
    recall = 1 - len(leaked) / len(CORPUS[kind])
    with capsys.disabled():
        print(f"\nredaction recall {kind}: {recall:.0%} of {len(CORPUS[kind])}")
    assert leaked == []


def test_ordinary_text_is_left_alone() -> None:
    for text in (
        "what can you do?",
        "rate 4 out of 5",
        "version 1.2.3 released on 2026-11-28 at 10:30",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 and activity 550e8400-e29b-41d4-a716-446655440000",
        "p95 latency is 2 s, CPU 80 %",
    ):
        assert redact(text) == text


def test_keyed_hashes_are_never_mistaken_for_personal_data() -> None:
    # A hash starting with two letters and two digits has the shape of an IBAN.
    hashed = {"bot.conversation.hash": "de89370400440532013000abcdef1234", "enduser.pseudo.id": "4111111111111111"}
    assert redact_attributes(hashed) is None


# Characters identifiers are made of, with separators and a non-ASCII digit, so that near-misses are generated too.
_IDENTIFIER_TEXT = st.text(alphabet="0123456789abcdefxyzDEGB@.:-+/() %\u0663", max_size=40)


@settings(max_examples=400, deadline=None)
@given(_IDENTIFIER_TEXT)
def test_the_shortcuts_never_change_what_redaction_returns(text: str) -> None:
    assert redact(text) == redact_uncached(text)
    assert redact(text) == redact_uncached(text)  # the second time from the cache


def test_the_shortcuts_keep_every_corpus_sample_redacted() -> None:
    for kind, values in CORPUS.items():
        for value in values:
            assert redact(sentences(kind, value)) == redact_uncached(sentences(kind, value)), kind


def test_the_cache_of_redacted_texts_is_bounded() -> None:
    for number in range(3 * privacy._CACHE_LIMIT):
        redact(f"order {number:08d}")
    redact("x" * privacy._CACHEABLE_LENGTH + " 1234 5678")
    assert len(privacy._redacted) <= privacy._CACHE_LIMIT


def test_spans_and_log_records_are_redacted_before_any_exporter_sees_them() -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(RedactingSpanProcessor(SimpleSpanProcessor(spans)))
    with tracer_provider.get_tracer("t").start_as_current_span("turn") as span:
        span.set_attributes({"bot.message.text": "mail jane@contoso.example", "bot.locale": "en-US", "n": 3})
        span.set_attribute("bot.conversation.hash", "de89370400440532013000abcdef1234")
        span.add_event("step", {"text": "call +44 20 7946 0958"})
    (exported,) = spans.get_finished_spans()
    assert dict(exported.attributes or {}) == {
        "bot.message.text": "mail [EMAIL]",
        "bot.locale": "en-US",
        "n": 3,
        "bot.conversation.hash": "de89370400440532013000abcdef1234",
    }
    assert dict(exported.events[0].attributes or {}) == {"text": "call [PHONE]"}

    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(RedactingLogProcessor())
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger_provider.get_logger("t").emit(
        body="from 192.168.10.20", attributes={"text": "card 4111 1111 1111 1111", "fromId": "4111111111111111"}
    )
    (record,) = [data.log_record for data in logs.get_finished_logs()]
    assert record.body == "from [IP]"
    assert dict(record.attributes or {}) == {"text": "card [CARD]", "fromId": "4111111111111111"}


async def test_no_sample_reaches_any_backend(
    bot: RunningBot, ingestion: IngestionStandIn, capfd: pytest.CaptureFixture[str]
) -> None:
    sent = 0
    async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        for kind, values in CORPUS.items():
            for value in values:
                response = await emulator.expect_replies(sentences(kind, value))
                assert response.status == 200
                sent += 1
    bot.flush()
    await ingestion.wait_for_async(lambda envs: len([e for e in envs if _is_request(e)]) >= sent, timeout=30)
    exported = json.dumps(ingestion.envelopes) + await bot.scrape() + capfd.readouterr().err
    assert "[EMAIL]" in exported  # text export is on: the redacted text is there
    leaked = {kind: [value for value in values if value in exported] for kind, values in CORPUS.items()}
    assert all(not values for values in leaked.values()), leaked


def _is_request(envelope: dict[str, Any]) -> bool:
    return bool(envelope.get("data", {}).get("baseType") == "RequestData")
