"""Microsoft's Web Chat, in headless Chromium, through a Direct Line emulator, against the real bot.

tests/webchat/drive.js serves Web Chat's prebuilt bundle (npm `botframework-webchat`) and the emulator (npm
`offline-directline`) on 127.0.0.1 and drives Debian's Chromium with `playwright-core`; the bot is the real
application on an ephemeral port. The conversation a user would have: the welcome, a suggested action clicked, a
knowledge-base answer, the feedback survey (rating and comment by suggested actions) to its thanks.

The screenshot of the finished conversation is kept as `webchat-conversation.png` in the test's temporary directory
(pytest keeps the last three runs' under its basetemp, e.g. /tmp/pytest-of-USER/pytest-current/).
Installed by `infra/dev/install.sh --test` (`npm ci` in tests/webchat, Debian's `chromium`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from bot.bot import WELCOME_ACTIONS, WELCOME_TEXT
from bot.dialogs.feedback_dialog import COMMENT_PROMPT, RATING_PROMPT
from bot.knowledge import KnowledgeBase
from telemetry import catalog
from tests.support.botserver import running_bot
from tests.support.prerequisites import missing_prerequisite

WEBCHAT_DIR = Path(__file__).parent / "webchat"
CHROMIUM = "/usr/bin/chromium"
STEP_TIMEOUT_MS = 20_000
RUN_TIMEOUT_S = 180.0


def _missing() -> list[str]:
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if not (WEBCHAT_DIR / "node_modules" / "botframework-webchat" / "dist" / "webchat.js").is_file():
        missing.append("tests/webchat/node_modules (npm ci)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(CHROMIUM)
    return missing


@pytest.fixture
def web_chat_installed() -> None:
    missing = _missing()
    if missing:
        missing_prerequisite(f"Web Chat test needs {', '.join(missing)}: run bash infra/dev/install.sh --test")


def _fragment(text: str, fragment: str) -> str:
    """A piece of a reply as Web Chat shows it: plain words, no markdown or apostrophes it may restyle."""
    assert fragment in text
    return fragment


def conversation_steps() -> list[dict[str, str]]:
    kb_answer = KnowledgeBase.load().match("what are you?")
    assert kb_answer is not None
    what_are_you = next(title for title, value in WELCOME_ACTIONS if value == "what are you?")
    return [
        {"see": _fragment(WELCOME_TEXT, "I answer questions about myself")},
        {"click": what_are_you},
        {"see": _fragment(kb_answer.answer, "a small Bot Framework bot that shows how to monitor a bot")},
        {"type": "feedback"},
        {"see": _fragment(RATING_PROMPT, "How would you rate me, from 1 (poor) to 5 (great)?")},
        {"click": "4"},
        {"see": _fragment(COMMENT_PROMPT, "Any comment")},
        {"click": "skip"},
        {"see": "Thank you for your feedback! You rated me 4/5."},
    ]


async def _drive(messages_url: str, steps: list[dict[str, str]], out: Path) -> tuple[int | None, dict[str, Any], str]:
    steps_file = out / "steps.json"
    steps_file.write_text(json.dumps(steps))
    process = await asyncio.create_subprocess_exec(
        "node",
        str(WEBCHAT_DIR / "drive.js"),
        *("--bot", messages_url, "--steps", str(steps_file), "--out", str(out)),
        *("--chromium", CHROMIUM, "--step-timeout-ms", str(STEP_TIMEOUT_MS)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # the browser too is ended with the process group on a timeout
        env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    lines = stdout.decode(errors="replace").strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    return process.returncode, result, stderr.decode(errors="replace")[-3000:]


@pytest.mark.usefixtures("web_chat_installed")
async def test_web_chat_completes_a_conversation_through_a_direct_line_emulator(
    azure_sdk_offline: None, tmp_path: Path
) -> None:
    steps = conversation_steps()
    async with running_bot() as bot:
        returncode, result, stderr = await _drive(bot.messages_url, steps, tmp_path)
        refused = await bot.total(catalog.REQUESTS_REJECTED)
        welcomed = await bot.total(catalog.TURNS, bot_intent=catalog.INTENT_WELCOME)

    assert returncode == 0, (result, stderr)
    assert result["done"] == steps
    assert result["outsideRequests"] == []
    assert result["pageErrors"] == []
    assert refused == 0  # every activity the emulator forwarded was accepted
    assert welcomed == 1
    assert _is_png(Path(result["screenshot"]))


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
