"""The layers point one way (docs/architecture.md): the bot runs without any telemetry code, telemetry builds on the
bot's hooks and vocabulary, and the architecture document names files that exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TELEMETRY_PACKAGES = ("telemetry", "opentelemetry", "prometheus_client", "psutil")

# A whole turn through the app built without instrumentation, in a fresh interpreter: an expectReplies activity is
# answered in the HTTP response, so no channel is needed. Prints the loaded modules of the telemetry packages.
_WITHOUT_TELEMETRY = """
import asyncio, json, sys
import aiohttp
from aiohttp import web
from bot.app import create_app
from bot.settings import Settings

async def main():
    runner = web.AppRunner(create_app(Settings.from_env({})), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    activity = {
        "type": "message", "text": "help", "id": "1", "channelId": "test", "deliveryMode": "expectReplies",
        "serviceUrl": "http://127.0.0.1:9", "conversation": {"id": "c"}, "from": {"id": "u"}, "recipient": {"id": "b"},
    }
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/api/messages", json=activity) as response:
                body = await response.json()
    finally:
        await runner.cleanup()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in PACKAGES)
    print(json.dumps({"status": response.status, "replies": len(body["activities"]), "loaded": loaded}))

asyncio.run(main())
"""


def test_the_app_without_telemetry_imports_no_telemetry_code() -> None:
    code = f"PACKAGES = {TELEMETRY_PACKAGES!r}\n{_WITHOUT_TELEMETRY}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert (outcome["status"], outcome["replies"]) == (200, 1)  # the turn ran: help answered
    assert outcome["loaded"] == []
