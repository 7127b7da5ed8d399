"""The layers point one way (docs/architecture.md): the bot runs without any telemetry code, telemetry builds on the
bot's hooks and vocabulary, and the architecture document names files that exist."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web
from botbuilder.core import BotTelemetryClient, UserState
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.routes import shipped_routes
from bot.routing import Route, Turn, commands
from bot.settings import Settings
from telemetry import catalog
from telemetry.config import TelemetryConfig
from telemetry.setup import configure
from telemetry.wiring import instrument

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


def _weather_routes(user_state: UserState, telemetry_client: BotTelemetryClient) -> list[Route]:
    """The shipped routes and one more intent: all a new intent takes (what bot/routes.py would hold)."""

    async def forecast(turn: Turn) -> None:
        await turn.context.send_activity("Sunny, as always on 127.0.0.1.")

    return [Route("weather", commands("weather", "forecast"), forecast), *shipped_routes(user_state, telemetry_client)]


async def test_an_intent_added_as_a_route_reaches_the_metrics_by_name(azure_sdk_offline: None) -> None:
    telemetry = configure(TelemetryConfig.from_env({"BOT_TELEMETRY_HASH_KEY": "k"}), console=False)
    app = create_app(Settings.from_env({"PORT": "0"}), instrument(telemetry), routes=_weather_routes)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/messages"
        answers = []
        async with aiohttp.ClientSession() as session:
            for number, text in enumerate(["weather", "Forecast!", "help"]):
                activity = {**_EXPECT_REPLIES, "id": str(number), "text": text}
                async with session.post(url, json=activity) as response:
                    assert response.status == 200
                    answers.append((await response.json())["activities"][0]["text"])
        exposition = generate_latest(telemetry.prometheus_registry).decode()
    finally:
        await runner.cleanup()
        telemetry.shutdown()
    turns = {
        sample.labels[_label(catalog.INTENT)]: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == catalog.TURNS.prometheus_name
    }
    assert answers[:2] == ["Sunny, as always on 127.0.0.1."] * 2
    assert turns == {"weather": 2.0, catalog.INTENT_HELP: 1.0}


def _label(attribute: str) -> str:
    return attribute.replace(".", "_")


_EXPECT_REPLIES = {
    "type": "message",
    "channelId": "test",
    "deliveryMode": "expectReplies",
    "serviceUrl": "http://127.0.0.1:9",
    "conversation": {"id": "c"},
    "from": {"id": "u"},
    "recipient": {"id": "b"},
}


ARCHITECTURE = ROOT / "docs" / "architecture.md"
_REPO_PATH = re.compile(r"(?<![\w/.])((?:bot|telemetry|tests|docs|infra|loadtest)/[\w./-]*[\w/])|(\.env\.example)")
# The kinds of change a newcomer asks about; each must have a row in the "to add X, touch Y" table.
CHANGES = ("intent", "dialog", "metric", "exporter", "workaround", "alert", "dashboard panel", "setting")


def named_paths(markdown: str) -> set[str]:
    """Every repository path the page names, in its text, its tables and its diagram."""
    return {"".join(match.groups("")) for match in _REPO_PATH.finditer(markdown)}


def test_every_file_the_architecture_page_names_exists() -> None:
    paths = named_paths(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(paths) > 30  # the page does name the files (the pattern still finds them)
    missing = sorted(path for path in paths if not (ROOT / path).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_the_path_check_catches_a_renamed_file() -> None:
    assert named_paths("see `bot/compat.py` and bot/routes.py: and (`.env.example`)") == {
        "bot/compat.py",
        "bot/routes.py",
        ".env.example",
    }
    assert not (ROOT / "bot" / "compat.py").exists()


def test_the_table_says_where_each_kind_of_change_goes() -> None:
    rows = [line for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines() if line.startswith("| a")]
    for change in CHANGES:
        assert any(change in row.split("|")[1] for row in rows), f"no row for adding a {change}"
