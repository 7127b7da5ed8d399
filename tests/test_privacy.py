"""Personal data sent through real conversations, with text export opted in, never leaves the process."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry.privacy import (
    RedactingLogProcessor,
    RedactingSpanProcessor,
    normalise,
    redact,
    redact_attributes,
    truncate,
)
from telemetry.privacy import text as privacy
from telemetry.privacy.patterns import substitute
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.pii import HARD_SAMPLES, ORDINARY_TEXT, corpus, leaks, measure_recall, sentences

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


@pytest.mark.parametrize("kind", sorted(HARD_SAMPLES))
def test_hand_written_samples_in_unusual_shapes_are_redacted_whole(kind: str) -> None:
    leaked = [(value, redact(sentences(kind, value))) for value in HARD_SAMPLES[kind] if leaks(kind, value, redact)]
    assert leaked == []


def test_generated_samples_of_every_kind_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    results = measure_recall(redact, examples=200)
    with capsys.disabled():
        for kind, (tried, leaked) in results.items():
            print(f"\ngenerated recall {kind}: {1 - len(leaked) / tried:.1%} of {tried}")
    assert {kind: leaked[:5] for kind, (_, leaked) in results.items() if leaked} == {}


def test_ordinary_text_is_left_alone() -> None:
    assert {text: redact(text) for text in ORDINARY_TEXT if redact(text) != text} == {}


def test_keyed_hashes_are_never_mistaken_for_personal_data() -> None:
    # A hash starting with two letters and two digits has the shape of an IBAN.
    hashed = {"bot.conversation.hash": "de89370400440532013000abcdef1234", "enduser.pseudo.id": "4111111111111111"}
    assert redact_attributes(hashed) is None


# Characters identifiers are made of, with separators and a non-ASCII digit, so that near-misses are generated too.
_IDENTIFIER_TEXT = st.text(
    alphabet='0123456789abcdefxyzDEGB@.:-+/() %=_"[]\u0663\u00a0\u2013\uff10\uff20', max_size=40
) | st.sampled_from(["jane at contoso dot com", "passport X1234567", "sk-abcdefghijklmnopqrstu", "00:1a:2b:3c:4d:5e"])


def redact_uncached(text: str) -> str:
    """`redact` without its shortcuts (size check, cheap pre-test, caches): every pattern on every text."""
    return substitute(normalise(truncate(text)))


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
    for number in range(3 * privacy._LONG_CACHE_LIMIT):
        assert redact("x" * privacy._CACHEABLE_LENGTH + f" call {number:08d}").endswith(" call [PHONE]")
    assert len(privacy._redacted_long) <= privacy._LONG_CACHE_LIMIT


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


# Inputs built to make a backtracking pattern go quadratic: long runs of the characters one pattern is made of,
# without the character that would complete a match (the e-mail pattern took 23 s on 80 KB of "a...a@").
ADVERSARIAL = {
    "local part then @": lambda n: "a" * n + "@",
    "dotted words": lambda n: "a." * (n // 2),
    "spelled-out dots": lambda n: "x dot " * (n // 6),
    "spelled-out at": lambda n: "x at y " * (n // 7),
    "spaced digits": lambda n: "1 " * (n // 2) + "a",
    "dashed digits": lambda n: "1-" * (n // 2) + "a",
    "colons": lambda n: "a:" * (n // 2),
    "dotted digits": lambda n: "1." * (n // 2),
    "base64": lambda n: "A1a/" * (n // 4) + "-",
    "token prefix": lambda n: "eyJ" + "a" * n,
    "quotes": lambda n: '"a' * (n // 2),
    "at signs": lambda n: "a@" * (n // 2),
    "domains": lambda n: "a@b." * (n // 4),
}


def _recording(substitute: Any, scanned: list[int]) -> Any:
    def recorded(text: str, *rest: Any) -> str:
        scanned.append(len(text))
        return str(substitute(text, *rest))

    return recorded


def _best_time(function: Any, argument: str) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        function(argument)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_the_patterns_run_in_linear_time(family: str) -> None:
    """Eight times the input may take about eight times as long (a quadratic pattern: 64 times). The bound is
    generous (three times linear) and compares the code with itself on the same machine, so load does not flip it."""
    small, large = ADVERSARIAL[family](16_384), ADVERSARIAL[family](8 * 16_384)
    ratio = _best_time(substitute, large) / max(_best_time(substitute, small), 1e-6)
    assert ratio < 24, f"{family}: 8x the input took {ratio:.0f}x as long"


def test_values_larger_than_the_limit_are_cut_before_they_are_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    scanned: list[int] = []
    substitute = privacy.substitute
    monkeypatch.setattr(privacy, "substitute", _recording(substitute, scanned))
    body_limit = 256 * 1024
    for make in ADVERSARIAL.values():
        clean = redact(make(body_limit))
        assert clean.endswith(privacy.TRUNCATION_MARK)
        assert len(clean) < 2 * privacy.MAX_REDACTED_LENGTH
    assert scanned
    assert max(scanned) <= privacy.MAX_REDACTED_LENGTH + len(privacy.TRUNCATION_MARK)
    # The cut never leaves half an identifier: it falls on a space, and what is before it is redacted.
    for padding in range(2030, 2050):
        assert "1111" not in redact("x " * padding + "4111 1111 1111 1111 and more")


async def test_a_request_of_adversarial_fields_does_not_stall_the_bot(
    bot: RunningBot, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """locale, activity id and text (exported: text export is on) each ~80 KB of "a...a@", at the body limit; the
    turn is answered while a heartbeat on the loop keeps beating, and no value is scanned beyond the limit."""
    scanned: list[int] = []
    substitute = privacy.substitute
    monkeypatch.setattr(privacy, "substitute", _recording(substitute, scanned))
    size = 80_000
    beats: list[float] = []

    async def heartbeat() -> None:
        while True:
            beats.append(time.perf_counter())
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(heartbeat())
    try:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            activity = emulator.activity(
                "message", "a" * size + "@", id="a" * size + "@", locale="a" * size + "@", deliveryMode="expectReplies"
            )
            response = await emulator.post(activity)
            assert response.status == 200, response.body
            assert response.body["activities"]
            # and a normal turn right after it
            assert (await emulator.expect_replies("help")).status == 200
    finally:
        ticker.cancel()
    bot.flush()
    assert scanned
    assert max(scanned) <= privacy.MAX_REDACTED_LENGTH + len(privacy.TRUNCATION_MARK)
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    with capsys.disabled():
        print(f"\nlongest pause of the loop during the adversarial turn: {max(gaps) * 1000:.0f} ms")


def test_console_tracebacks_are_redacted_and_cannot_forge_a_line(capfd: pytest.CaptureFixture[str]) -> None:
    from telemetry.logs import CONSOLE_FORMAT, ConsoleFormatter, ConsoleHandler, TraceContextFilter

    handler = ConsoleHandler()
    handler.setFormatter(ConsoleFormatter(CONSOLE_FORMAT))
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("tests.console")
    logger.addHandler(handler)
    logger.propagate = False
    forged = "2026-01-01 00:00:00,000 ERROR   bot.adapter [trace=- span=-] FORGED"
    try:
        try:
            raise ValueError(f"no conversation for jane.doe@contoso.example, +44 20 7946 0958\n{forged}\x1b[2J")
        except ValueError:
            logger.exception("reply failed")
    finally:
        logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert "reply failed" in err
    assert "ValueError" in err
    assert "jane.doe" not in err
    assert "7946" not in err
    assert "\x1b" not in err
    assert not any(line.startswith("2026-01-01") for line in err.splitlines())


PERSONAL = ("jane.doe@contoso.example", "+44 20 7946 0958", "4111 1111 1111 1111")


async def test_with_text_export_off_no_personal_data_reaches_any_sink_through_ids_urls_or_errors(
    ingestion: IngestionStandIn, channel: ChannelStandIn, azure_sdk_offline: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """Personal data where clients put it besides the text: ids containing "/", a serviceUrl path, the locale,
    percent-encoded; the replies fail (the serviceUrl path is unknown to the channel) so errors are recorded too."""
    conversation = f"{PERSONAL[0]}/{PERSONAL[1]}"
    service_url = channel.service_url + "/" + quote(PERSONAL[1], safe="")
    async with running_bot({"BOT_REPLY_TIMEOUT_SECONDS": "2"}, connection_string=ingestion.connection_string) as bot:
        async with EmulatorClient(
            bot.messages_url, service_url, channel_id="directline", conversation_id=conversation, user_id=PERSONAL[1]
        ) as emulator:
            for activity_id in (PERSONAL[2], quote(PERSONAL[1]), f"{PERSONAL[0]}/x"):
                activity = emulator.activity("message", f"my card is {PERSONAL[2]}", id=activity_id, locale=PERSONAL[0])
                assert (await emulator.post(activity)).status == 201
        bot.flush()
        await ingestion.wait_for_async(lambda envs: len([e for e in envs if _is_request(e)]) >= 3, timeout=30)
        exported = json.dumps(ingestion.envelopes) + await bot.scrape() + capfd.readouterr().err
    assert "RemoteDependency" in exported  # the failed replies were recorded
    assert "Exception" in exported
    forms = {
        form for value in PERSONAL for form in (value, quote(value), quote(value, safe=""), value.replace(" ", ""))
    }
    leaked = sorted(form for form in forms if form in exported)
    assert leaked == []
