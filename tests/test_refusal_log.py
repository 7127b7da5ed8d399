"""Every refused request leaves one WARNING line on the console naming its reason and status, rate-limited per
reason with the number left out, besides the counter telemetry increments."""

from __future__ import annotations

import logging
import re

import aiohttp
import pytest

from bot.refusals import RefusalLog
from telemetry import catalog
from tests.support.botserver import running_bot


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "bot.refusals.test"]


def test_one_line_per_reason_and_interval_then_the_number_left_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    refusals = RefusalLog(interval=10.0, clock=clock, logger=logging.getLogger("bot.refusals.test"))
    caplog.set_level(logging.WARNING, "bot.refusals.test")

    refusals.refused(catalog.REJECT_INVALID_JSON, 400, "the body is empty")
    for _ in range(3):
        clock.now += 3.0
        refusals.refused(catalog.REJECT_INVALID_JSON, 400, "the body is empty")
    refusals.refused(catalog.REJECT_MEDIA_TYPE, 415, "Content-Type must be application/json")  # another reason
    assert _lines(caplog) == [
        "refused a request with 400 invalid_json: the body is empty",
        "refused a request with 415 unsupported_media_type: Content-Type must be application/json",
    ]

    clock.now += 1.0  # 10 s after the first line
    refusals.refused(catalog.REJECT_INVALID_JSON, 400, "the body is not valid JSON")
    clock.now += 60.0
    refusals.refused(catalog.REJECT_INVALID_JSON, 400, "the body is empty")
    assert _lines(caplog)[2:] == [
        "refused a request with 400 invalid_json: the body is not valid JSON"
        " (3 more refused for this reason since the last line)",
        "refused a request with 400 invalid_json: the body is empty",
    ]
    assert all(record.levelno == logging.WARNING for record in caplog.records)


async def test_a_refused_request_is_logged_on_the_console_and_counted(
    azure_sdk_offline: None, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_bot() as bot, aiohttp.ClientSession() as session:
        capfd.readouterr()
        for _ in range(3):
            async with session.post(bot.messages_url, data=b"{", headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400
        async with session.post(bot.messages_url, data=b"{}", headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415
        console = capfd.readouterr().err.splitlines()
        assert await bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection=catalog.REJECT_INVALID_JSON) == 3

    refusal_lines = [line for line in console if " bot.refusals " in line]
    assert len(refusal_lines) == 2, console  # the two later invalid_json refusals wait for the next line
    json_line, media_line = refusal_lines
    assert re.search(r" WARNING +bot\.refusals \[trace=[0-9a-f]{32} span=[0-9a-f]{16}\] ", json_line), json_line
    assert "refused a request with 400 invalid_json: the body is not valid JSON" in json_line
    assert "refused a request with 415 unsupported_media_type: Content-Type must be application/json" in media_line
