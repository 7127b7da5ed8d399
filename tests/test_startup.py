"""`python -m bot` started as a user starts it: banner, serving, metrics, export, bad settings, .env, SIGTERM.

The child process is outside the in-process network guard, so its environment is scrubbed of every setting that
could point it elsewhere: Azure Monitor export, when on, goes to a local ingestion stand-in only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest.rig import exposition
from loadtest.rig.ports import free_ports
from telemetry import catalog
from tests.support.emulator import EmulatorClient
from tests.support.fixtures import AZURE_SDK_OFFLINE_ENV
from tests.support.ingestion import Envelope, IngestionStandIn
from tests.support.polling import wait_until_async

STARTUP_TIMEOUT = 8.0  # seconds from spawning until the banner is complete
REQUEST_TIMEOUT = 5.0
EXIT_TIMEOUT = 5.0
BANNER_END = "Press Ctrl+C to stop."
UNUSED_SERVICE_URL = "http://127.0.0.1:9"  # never contacted: every turn uses deliveryMode expectReplies
# Settings the program reads, dropped from the inherited environment so a developer's own cannot leak in.
PROGRAM_PREFIXES = ("APPLICATIONINSIGHTS_", "MICROSOFT", "OTEL_", "BOT_")
DROPPED = ("PORT", "PYTHON_DOTENV_DISABLED")


def child_environment(extra: Mapping[str, str], *, dotenv: bool = False) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(PROGRAM_PREFIXES) and name not in DROPPED
    }
    env.update(AZURE_SDK_OFFLINE_ENV)  # statsbeat, SDK stats and control plane off; loopback never proxied
    if not dotenv:
        # Belt and braces: whatever .env the program might find (a developer's) must not redirect this run.
        env["PYTHON_DOTENV_DISABLED"] = "true"
    env.update(extra)
    return env


async def spawn_bot(cwd: Path, env: Mapping[str, str], *arguments: str) -> asyncio.subprocess.Process:
    """`python -m bot [arguments]` with its output piped, as an operator would start it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *arguments,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


class BotProcess:
    """A running `python -m bot`; stdout lines are queued and stderr collected as they arrive."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self.stdout: list[str] = []
        self._stderr = bytearray()
        assert process.stdout is not None
        assert process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_lines(process.stdout)),
            asyncio.create_task(self._read_all(process.stderr)),
        ]

    @classmethod
    async def start(cls, cwd: Path, env: Mapping[str, str], *arguments: str) -> BotProcess:
        return cls(await spawn_bot(cwd, env, *arguments))

    @property
    def stderr(self) -> str:
        return self._stderr.decode("utf-8", errors="replace")

    async def _read_lines(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            self.stdout.append(text)
            self.lines.put_nowait(text)
        self.lines.put_nowait(None)

    async def _read_all(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._stderr.extend(chunk)

    async def banner(self, timeout: float = STARTUP_TIMEOUT) -> list[str]:  # noqa: ASYNC109 - a deadline
        """Stdout lines up to and including the banner's last line."""
        deadline = asyncio.get_running_loop().time() + timeout
        lines: list[str] = []
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                line = await asyncio.wait_for(self.lines.get(), max(remaining, 0))
            except TimeoutError:
                problem = f"no complete banner within {timeout:g}s; stdout {lines}, {self.describe()}"
                raise AssertionError(problem) from None
            if line is None:
                await self.finish()
                raise AssertionError(f"stdout closed before the banner was complete: {lines}, {self.describe()}")
            lines.append(line)
            if line.strip() == BANNER_END:
                return lines

    async def finish(self, timeout: float = EXIT_TIMEOUT) -> int:  # noqa: ASYNC109 - a deadline
        """Wait for the process to exit and for its output to be read; the exit code."""
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
            await asyncio.wait_for(asyncio.gather(*self._readers), timeout)
        except TimeoutError:
            raise AssertionError(f"the bot did not exit within {timeout:g}s; {self.describe()}") from None
        return code

    async def terminate(self, timeout: float = EXIT_TIMEOUT) -> int:  # noqa: ASYNC109 - a deadline
        """SIGTERM, as a process manager stops the bot; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return await self.finish(timeout)

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), EXIT_TIMEOUT)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def describe(self) -> str:
        return f"exit code {self.process.returncode}, stderr:\n{self.stderr[-4000:]}"


@contextlib.asynccontextmanager
async def bot_process(cwd: Path, env: Mapping[str, str]) -> AsyncIterator[BotProcess]:
    running = await BotProcess.start(cwd, env)
    try:
        yield running
    finally:
        await running.kill()


async def turns_total(session: aiohttp.ClientSession, metrics_url: str) -> float:
    async with session.get(metrics_url) as response:
        assert response.status == 200
        text = await response.text()
    return exposition.total(text, catalog.TURNS)


def message_texts(body: Any) -> list[str]:
    assert isinstance(body, dict), body
    return [a.get("text") or "" for a in body.get("activities", []) if a.get("type") == "message"]


def event_names(envelopes: list[Envelope]) -> list[str]:
    return [
        e["data"]["baseData"].get("name", "") for e in envelopes if e.get("data", {}).get("baseType") == "EventData"
    ]


async def test_without_a_connection_string_it_serves_counts_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, metrics_port = free_ports(2)
    env = child_environment({"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port)})
    async with bot_process(tmp_path, env) as bot:
        banner = "\n".join(await bot.banner())
        assert f"http://localhost:{port}/api/messages" in banner
        assert f"http://localhost:{metrics_port}/metrics" in banner
        assert "Azure Monitor export:   off" in banner
        assert "authentication off" in banner

        base = f"http://127.0.0.1:{port}"
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with EmulatorClient(f"{base}/api/messages", UNUSED_SERVICE_URL, session=session) as emulator:
                reply = await emulator.expect_replies("help")
            assert reply.status == 200, reply
            assert any(message_texts(reply.body)), reply.body

            async def counted_turns() -> float | None:
                return await turns_total(session, metrics_url) or None

            counted: float = await wait_until_async(counted_turns, timeout=REQUEST_TIMEOUT, message="bot_turns_total")
            assert counted == 1

        assert await bot.terminate() == 0, bot.describe()
        assert bot.stdout[-1] == "otel-chatbot: stopped", bot.stdout
        assert bot.stdout[-2].startswith("otel-chatbot: stopping"), bot.stdout


async def test_ctrl_c_says_it_is_stopping_and_that_it_stopped(tmp_path: Path) -> None:
    port, metrics_port = free_ports(2)
    env = child_environment({"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port)})
    async with bot_process(tmp_path, env) as bot:
        await bot.banner()
        bot.process.send_signal(signal.SIGINT)  # what Ctrl+C sends
        assert await bot.finish() == 0, bot.describe()
        tail = bot.stdout[[line.strip() for line in bot.stdout].index(BANNER_END) + 1 :]
        assert len(tail) == 2, bot.describe()
        assert re.fullmatch(
            r"otel-chatbot: stopping \(turns in flight get up to [\d.]+ s, then telemetry is flushed\)", tail[0]
        )
        assert tail[1] == "otel-chatbot: stopped"
        assert "Traceback" not in bot.stderr


async def test_with_a_connection_string_every_envelope_reaches_ingestion_by_the_time_it_exits(
    tmp_path: Path, ingestion: IngestionStandIn
) -> None:
    port, metrics_port = free_ports(2)
    env = child_environment(
        {
            "PORT": str(port),
            "BOT_METRICS_PORT": str(metrics_port),
            **ingestion.export_settings(tmp_path / "ai-storage"),
        }
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    async with bot_process(cwd, env) as bot:
        banner = "\n".join(await bot.banner())
        assert "Azure Monitor export:   on" in banner

        async with EmulatorClient(
            f"http://127.0.0.1:{port}/api/messages", UNUSED_SERVICE_URL, timeout=REQUEST_TIMEOUT
        ) as emulator:
            for text in ("help", "what can you do?", "help"):
                reply = await emulator.expect_replies(text)
                assert reply.status == 200, reply
                assert any(message_texts(reply.body)), reply.body

        # Nothing waited for the exporters: whatever is still batched must be flushed by the shutdown.
        assert await bot.terminate() == 0, bot.describe()

    requests = ingestion.of_type("RequestData")
    assert len(requests) == 3, [e["data"]["baseData"].get("name") for e in requests]
    assert "Chatbot Initialized" in event_names(ingestion.envelopes)
    assert ingestion.other_requests == []  # only track calls: no live metrics, no other endpoint


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PORT", "abc"),
        ("MicrosoftAppType", "Bogus"),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=not-a-guid"),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=00000000-0000-0000-0000-000000000000;Ingest=x"),
    ],
)
async def test_a_bad_setting_stops_it_with_exit_code_2_naming_the_variable(
    tmp_path: Path, setting: str, value: str
) -> None:
    port, metrics_port = free_ports(2)
    env = child_environment({"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port), setting: value})
    async with bot_process(tmp_path, env) as bot:
        code = await bot.finish(STARTUP_TIMEOUT)
    assert code == 2, bot.describe()
    assert setting in bot.stderr
    assert "Traceback" not in bot.stderr
    assert len(bot.stderr.strip().splitlines()) == 1, bot.stderr  # one line that says what to fix
    assert not any("is running" in line for line in bot.stdout)


async def test_export_failures_at_shutdown_read_like_those_of_the_run(tmp_path: Path) -> None:
    """The exporters' complaints while flushing at exit go through the bot's console format (ids masked as during
    the run), not through Python's bare last-resort handler."""
    port, metrics_port, closed = free_ports(3)
    connection = f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:{closed}/"
    env = child_environment(
        {"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port), "APPLICATIONINSIGHTS_CONNECTION_STRING": connection}
    )
    async with bot_process(tmp_path, env) as bot:
        await bot.banner()
        assert await bot.terminate() == 0, bot.describe()
    lines = bot.stderr.strip().splitlines()
    assert any("Connection refused" in line for line in lines), bot.describe()
    console_line = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
    assert all(console_line.match(line) for line in lines), bot.describe()


async def test_a_dotenv_file_in_the_working_directory_is_read_and_the_real_environment_wins(tmp_path: Path) -> None:
    port, metrics_port = free_ports(2)
    # PORT=abc in .env would stop the bot with exit code 2 if it won over the real environment's PORT.
    (tmp_path / ".env").write_text("OTEL_SERVICE_NAME=from-dotenv\nPORT=abc\n", encoding="utf-8")
    env = child_environment({"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port)}, dotenv=True)
    async with bot_process(tmp_path, env) as bot:
        banner = await bot.banner()
        assert banner[0].startswith("from-dotenv"), banner
        assert f"http://localhost:{port}/api/messages" in "\n".join(banner)
        assert await bot.terminate() == 0, bot.describe()


async def test_sigterm_lets_turns_in_flight_finish_and_loses_no_telemetry(
    tmp_path: Path, ingestion: IngestionStandIn
) -> None:
    port, metrics_port = free_ports(2)
    env = child_environment(
        {
            "PORT": str(port),
            "BOT_METRICS_PORT": str(metrics_port),
            **ingestion.export_settings(tmp_path / "ai-storage"),
            # Every message turn takes a second, so turns are still running when SIGTERM arrives.
            "BOT_FAULT_DELAY_RATIO": "1",
            "BOT_FAULT_DELAY_SECONDS": "1",
        }
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    async with bot_process(cwd, env) as bot:
        await bot.banner()
        url = f"http://127.0.0.1:{port}/api/messages"
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            users = [EmulatorClient(url, UNUSED_SERVICE_URL, session=session) for _ in range(6)]
            assert (await users[0].expect_replies("help")).status == 200
            assert await turns_total(session, metrics_url) == 1  # answered and scraped before SIGTERM
            in_flight = [asyncio.ensure_future(user.expect_replies("help")) for user in users[1:]]

            async def all_received() -> bool:
                return await received_total(session, metrics_url) == 6

            await wait_until_async(all_received, timeout=REQUEST_TIMEOUT, message="5 turns in flight")
            bot.process.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*in_flight)
        assert [answer.status for answer in answers] == [200] * 5
        assert all(message_texts(answer.body) for answer in answers)
        assert await bot.finish() == 0, bot.describe()

    requests = ingestion.of_type("RequestData")
    assert len(requests) == 6
    assert {r["data"]["baseData"]["responseCode"] for r in requests} == {"200"}


async def received_total(session: aiohttp.ClientSession, metrics_url: str) -> float:
    async with session.get(metrics_url) as response:
        text = await response.text()
    return exposition.total(text, catalog.MESSAGES_RECEIVED)
