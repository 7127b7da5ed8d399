"""Personal data sent through real conversations, with text export opted in, never leaves the process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from telemetry.privacy import redact, redact_attributes
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
