"""The bot's start-up settings (`bot.runtime.tune_after_start`: garbage collection frozen after start-up, a shorter
GIL switch interval; docs/performance.md) are applied by `python -m bot`, and by each of its workers, once their sites
listen, unless `BOT_TUNE_RUNTIME=false`. Without them a full garbage collection walks the ~110,000 objects of start-up
and stalls the callback it interrupts for 100-170 ms, and the loop gives the GIL away to the exporters' threads for up
to 5 ms at every system call: the longest callback under load is measured by `python -m loadtest.benchmark.loop`.
Whether anything blocks the loop at all is tested deterministically by tests/test_blocking.py.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot import runtime
from bot.__main__ import serve
from bot.settings import ConfigError, Settings
from telemetry.setup import configure
from tests.support.botserver import settings_from, telemetry_config_from
from tests.support.polling import wait_until_async

# ---- python -m bot applies them ------------------------------------------------------------------------------------


def test_the_start_up_settings_are_on_unless_bot_tune_runtime_turns_them_off() -> None:
    assert Settings.from_env({}).tune_runtime is True
    for value in ("false", "0", "off", "no"):
        assert Settings.from_env({"BOT_TUNE_RUNTIME": value}).tune_runtime is False
    assert Settings.from_env({"BOT_TUNE_RUNTIME": "true"}).tune_runtime is True
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"BOT_TUNE_RUNTIME": "maybe"})
    assert raised.value.variable == "BOT_TUNE_RUNTIME"


@pytest.mark.parametrize(("value", "applied"), [("", 1), ("false", 0)], ids=["default", "BOT_TUNE_RUNTIME=false"])
async def test_python_m_bot_applies_them_once_it_serves(
    value: str, applied: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runtime, "tune_after_start", lambda: calls.append(capsys.readouterr().out))
    settings = settings_from({"BOT_TUNE_RUNTIME": value})
    telemetry = configure(telemetry_config_from({"BOT_TUNE_RUNTIME": value}))
    serving = asyncio.ensure_future(serve(settings, telemetry))
    printed: list[str] = []
    try:

        def banner_printed() -> bool:
            printed.append(capsys.readouterr().out)
            return any("Press Ctrl+C to stop." in text for text in printed + calls) or serving.done()

        await wait_until_async(banner_printed, timeout=30, message="the banner")
        assert not serving.done(), serving
        # No await between the banner and the settings: once the banner is out, they were applied or never will be.
        assert len(calls) == applied
        if applied:
            assert "Press Ctrl+C to stop." in calls[0]  # after the sites started listening
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        telemetry.shutdown()
