"""`python -m bot --workers N`: N processes answer on one port, share conversation state, are scraped as one target
with a series per worker, stop together on SIGTERM; bad worker settings stop start-up with exit code 2.

The processes run as a user starts them (tests/test_startup.py's helpers), on ephemeral 127.0.0.1 ports; the
supervisor's /metrics is what Prometheus would scrape.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.dialogs.feedback_dialog import COMMENT_PROMPT, RATING_PROMPT
from bot.settings import ConfigError, Settings
from bot.state import SqliteStateStorage
from bot.workers import worker_environment
from loadtest.rig import exposition
from loadtest.rig.ports import free_ports
from telemetry import catalog
from telemetry.worker_metrics import metrics_proxy
from tests.support.azurite import Azurite, running_azurite
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.polling import wait_until_async
from tests.test_startup import BotProcess, child_environment, message_texts, spawn_bot

WORKERS_START_TIMEOUT = 60.0  # two interpreters importing the SDKs on a shared machine
STOP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 10.0
UNUSED_SERVICE_URL = "http://127.0.0.1:9"  # never contacted: every turn uses deliveryMode expectReplies
METRICS_TOKEN = "scrape-secret"
SERVING = re.compile(r"worker (\d+) is serving \(pid (\d+)\)")


# ---- settings ------------------------------------------------------------------------------------------------------


def test_one_worker_by_default_and_bot_workers_sets_the_count() -> None:
    assert Settings.from_env({}).workers == 1
    assert Settings.from_env({"BOT_WORKERS": "4"}).workers == 4


@pytest.mark.parametrize("value", ["abc", "0", "65", "1.5", "-1", "\u00b2"])
def test_a_bad_worker_count_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"BOT_WORKERS": value})
    assert raised.value.variable == "BOT_WORKERS"
    assert "whole number from 1 to 64" in str(raised.value)


@pytest.mark.parametrize("value", ["soon", "1", "601", "nan"])
def test_a_bad_hung_worker_timeout_is_refused_naming_the_variable(value: str) -> None:
    assert Settings.from_env({}).worker_timeout_seconds == 10.0
    assert Settings.from_env({"BOT_WORKER_TIMEOUT_SECONDS": "2.5"}).worker_timeout_seconds == 2.5
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"BOT_WORKER_TIMEOUT_SECONDS": value})
    assert raised.value.variable == "BOT_WORKER_TIMEOUT_SECONDS"


def test_a_state_file_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    assert Settings.from_env({"BOT_STATE_DB": str(tmp_path / "state.db")}).state_db == str(tmp_path / "state.db")
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"BOT_STATE_DB": str(tmp_path / "missing" / "state.db")})
    assert raised.value.variable == "BOT_STATE_DB"


def test_each_worker_gets_its_own_instance_id_and_the_shared_state_and_hash_key() -> None:
    base = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.instance.id=bot-a", "BOT_WORKERS": "2"}
    env = worker_environment(base, 1, "data/state.db", "token", "key")
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=prod,service.instance.id=bot-a-w1"
    assert (env["BOT_STATE_DB"], env["BOT_METRICS_BEARER_TOKEN"], env["BOT_TELEMETRY_HASH_KEY"]) == (
        "data/state.db",
        "token",
        "key",
    )
    assert env["BOT_METRICS_BASIC_AUTH"] == ""


# ---- shared conversation state -------------------------------------------------------------------------------------


async def test_the_shared_state_storage_keeps_the_memory_storage_contract(tmp_path: Path) -> None:
    first, second = SqliteStateStorage(tmp_path / "state.db"), SqliteStateStorage(tmp_path / "state.db")
    try:
        await first.write({"conversation/1": {"count": 1}})
        read = await second.read(["conversation/1", "missing"])
        assert read.keys() == {"conversation/1"}
        item = read["conversation/1"]
        assert item["count"] == 1
        assert item["e_tag"]
        await second.write({"conversation/1": {**item, "count": 2}})
        with pytest.raises(KeyError, match="Etag conflict"):
            await first.write({"conversation/1": {**item, "count": 3}})  # written meanwhile by the other process
        await first.write({"conversation/1": {"count": 4, "e_tag": "*"}})
        assert (await second.read(["conversation/1"]))["conversation/1"]["count"] == 4
        await first.delete(["conversation/1"])
        assert await second.read(["conversation/1"]) == {}
    finally:
        first.close()
        second.close()


async def test_two_applications_sharing_the_state_file_continue_each_others_dialogs(tmp_path: Path) -> None:
    """In one process, so that the turns alternate for certain (the processes below rely on the kernel)."""
    runners, urls = [], []
    storages = [SqliteStateStorage(tmp_path / "state.db") for _ in range(2)]
    settings = Settings.from_env({"PORT": "0", "BOT_METRICS_PORT": "0", "BOT_TELEMETRY_HASH_KEY": "k"})
    try:
        for storage in storages:
            runner = web.AppRunner(create_app(settings, storage=storage))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            runners.append(runner)
            urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/api/messages")
        async with aiohttp.ClientSession() as session:
            apps = [EmulatorClient(url, UNUSED_SERVICE_URL, session=session) for url in urls]
            apps[1].conversation_id, apps[1].user_id = apps[0].conversation_id, apps[0].user_id

            async def ask(app: int, text: str) -> list[str]:
                response = await apps[app].expect_replies(text)
                assert response.status == 200
                return message_texts(response.body)

            assert RATING_PROMPT in await ask(0, "feedback")
            assert COMMENT_PROMPT in await ask(1, "4")  # the other one knows the survey is waiting for a rating
            assert "thank" in " ".join(await ask(0, "skip")).lower()
    finally:
        for runner in runners:
            await runner.cleanup()
        for storage in storages:
            storage.close()


# ---- the supervisor's /metrics (in this process, with stand-in workers) ---------------------------------------------

WORKER_EXPOSITION = (
    "# HELP bot_turns_total Bot turns\n# TYPE bot_turns_total counter\n"
    'bot_turns_total{bot_channel="webchat"} 3.0\n'
    "# HELP target_info Target metadata\n# TYPE target_info gauge\n"
    'target_info{service_instance_id="host-1"} 1.0\n'
)


@dataclass
class StandInWorkers:
    ports: dict[str, int]
    scrapes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def stand_in_workers(token: str) -> AsyncIterator[StandInWorkers]:
    """Workers 0 and 1 serve an exposition to the worker token only; worker 2 is down (nothing listens)."""
    workers = StandInWorkers({})
    runners = []
    try:
        for index, (turns, instance) in enumerate([("3.0", "host-1"), ("4.0", "host-2")]):

            async def metrics(
                request: web.Request, index: int = index, turns: str = turns, instance: str = instance
            ) -> web.Response:
                workers.scrapes.append(str(index))
                if request.headers.get("Authorization") != f"Bearer {token}":
                    return web.Response(status=401)
                text = WORKER_EXPOSITION.replace("3.0", turns).replace("host-1", instance)
                return web.Response(text=text, content_type="text/plain")

            app = web.Application()
            app.router.add_get("/metrics", metrics)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            runners.append(runner)
            workers.ports[str(index)] = runner.addresses[0][1]
        (workers.ports["2"],) = free_ports(1)
        yield workers
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.mark.parametrize(
    ("credentials", "authorization"),
    [
        ({"bearer_token": METRICS_TOKEN}, f"Bearer {METRICS_TOKEN}"),
        ({"basic_auth": "prometheus:pa55"}, "Basic " + base64.b64encode(b"prometheus:pa55").decode()),
    ],
    ids=["bearer", "basic"],
)
async def test_the_supervisor_serves_every_workers_series_labelled_apart_behind_the_bots_credentials(
    credentials: dict[str, str], authorization: str
) -> None:
    async with stand_in_workers("worker-token") as workers:
        runner = web.AppRunner(
            metrics_proxy(
                workers.ports, "worker-token", credentials.get("bearer_token", ""), credentials.get("basic_auth", "")
            )
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
            async with aiohttp.ClientSession() as session:
                for refused in ({}, {"Authorization": "Bearer wrong"}):
                    async with session.get(url, headers=refused) as response:
                        assert response.status == 401
                assert workers.scrapes == []  # a refused scrape does not reach the workers
                async with session.get(url, headers={"Authorization": authorization}) as response:
                    assert response.status == 200
                    text = await response.text()
        finally:
            await runner.cleanup()
    samples = [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]
    turns = sorted((labels["worker"], value) for name, labels, value in samples if name == "bot_turns_total")
    assert turns == [("0", 3.0), ("1", 4.0)]  # joined apart, never summed
    instances = {
        labels["worker"]: labels["service_instance_id"] for name, labels, _ in samples if name == "target_info"
    }
    assert instances == {"0": "host-1", "1": "host-2"}
    assert [value for name, _, value in samples if name == "bot_workers_unreachable"] == [1.0]  # worker 2 is down
    assert [value for name, _, value in samples if name == "bot_workers_hung_total"] == [0.0]
    assert text.count("# TYPE bot_turns_total counter") == 1


# ---- the real processes --------------------------------------------------------------------------------------------


@dataclass
class Workers:
    bot: BotProcess
    port: int
    metrics_port: int
    pids: dict[str, int]

    @property
    def messages_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/messages"

    async def scrape(self, session: aiohttp.ClientSession) -> str:
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with session.get(f"http://127.0.0.1:{self.metrics_port}/metrics", headers=headers) as response:
            assert response.status == 200, response.status
            return await response.text()

    async def turns_by_worker(self, session: aiohttp.ClientSession) -> dict[str, float]:
        return exposition.total_by(await self.scrape(session), catalog.TURNS, "worker")

    async def counted(self, session: aiohttp.ClientSession, total: int) -> dict[str, float]:
        """Per-worker turn counts, once they add up to `total` (a turn is counted as it is answered)."""

        async def settled() -> tuple[dict[str, float]] | None:
            turns = await self.turns_by_worker(session)
            return (turns,) if sum(turns.values()) == total else None

        (found,) = await wait_until_async(
            settled, timeout=REQUEST_TIMEOUT, interval=0.05, message=f"{total} turns on /metrics"
        )
        return dict(found)


def _alive(pid: int) -> bool:
    """Whether `pid` is still a worker of ours (not reaped, not reused by something else)."""
    try:
        return "--worker" in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return False


def _gone(pid: int) -> bool:
    return not _alive(pid)


@contextlib.asynccontextmanager
async def running_workers(
    cwd: Path, extra: Mapping[str, str], arguments: tuple[str, ...] = ("--workers", "2")
) -> AsyncIterator[Workers]:
    port, metrics_port = free_ports(2)
    env = child_environment(
        {"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port), "BOT_METRICS_BEARER_TOKEN": METRICS_TOKEN, **extra}
    )
    bot = await BotProcess.start(cwd, env, *arguments)
    pids: dict[str, int] = {}
    try:
        lines = await bot.banner(WORKERS_START_TIMEOUT)
        pids.update((m.group(1), int(m.group(2))) for m in map(SERVING.search, lines) if m)
        yield Workers(bot, port, metrics_port, pids)
    finally:
        await bot.kill()  # the workers get SIGTERM when the supervisor dies (Linux)
        for pid in pids.values():
            with contextlib.suppress(AssertionError):
                await wait_until_async(functools.partial(_gone, pid), timeout=STOP_TIMEOUT, interval=0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _new_connections() -> aiohttp.ClientSession:
    """Every request on a new connection: the kernel picks a worker per connection."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    )


async def test_two_workers_answer_on_one_port_and_are_scraped_as_one_target(tmp_path: Path) -> None:
    extra = {"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=test-bot"}
    async with running_workers(tmp_path, extra) as workers, _new_connections() as session:
        banner = "\n".join(workers.bot.stdout)
        assert "is running on 2 worker processes" in banner
        assert f"http://localhost:{workers.port}/api/messages" in banner
        assert sorted(workers.pids) == ["0", "1"]
        assert len(set(workers.pids.values())) == 2
        supervisor = workers.bot.process.pid
        for pid in workers.pids.values():
            assert _parent(pid) == supervisor

        # Turns on new connections until each worker has answered some (the kernel spreads them by connection).
        sent, turns = 0, dict[str, float]()
        while len(turns) < 2 or min(turns.values()) == 0:
            assert sent < 200, f"after {sent} connections, turns per worker: {turns}"
            for _ in range(8):
                reply = await EmulatorClient(workers.messages_url, UNUSED_SERVICE_URL, session=session).expect_replies(
                    f"help {sent}"
                )
                assert reply.status == 200, reply
                assert any(message_texts(reply.body)), reply.body
                sent += 1
            turns = await workers.counted(session, sent)
        assert set(turns) == {"0", "1"}
        assert sum(turns.values()) == sent  # every turn counted once, by the worker that answered it

        async with session.get(f"http://127.0.0.1:{workers.metrics_port}/metrics") as response:
            assert response.status == 401  # the supervisor's endpoint keeps the bot's credentials
        text = await workers.scrape(session)
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        instances: dict[str, str] = {}
        unreachable_seen = False
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                assert key not in seen, f"duplicate series {key}"
                seen.add(key)
                if sample.name == "target_info":
                    instances[sample.labels[catalog.WORKER]] = sample.labels["service_instance_id"]
                if sample.name == catalog.WORKERS_UNREACHABLE.prometheus_name:
                    assert sample.value == 0
                    unreachable_seen = True
                elif sample.name == catalog.WORKERS_HUNG.prometheus_name:
                    assert sample.value == 0
                else:
                    assert catalog.WORKER in sample.labels, sample.name
        assert instances == {"0": "test-bot-w0", "1": "test-bot-w1"}  # one Application Insights role instance each
        assert unreachable_seen


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


async def test_a_conversation_keeps_its_dialog_state_when_its_turns_land_on_different_workers(tmp_path: Path) -> None:
    # BOT_WORKERS instead of the flag: the environment variable is the flag's default.
    async with running_workers(tmp_path, {"BOT_WORKERS": "2"}, arguments=()) as workers, _new_connections() as session:
        assert "is running on 2 worker processes" in "\n".join(workers.bot.stdout)
        await _a_survey_moves_between_workers_and_completes(workers, session)


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    yield from running_azurite(tmp_path / "azurite")


async def test_workers_share_conversation_state_in_the_blob_store_through_the_same_interface(
    tmp_path: Path, azurite: Azurite
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    extra = {
        "BOT_STATE_STORE": "blob",
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "BOT_STATE_BLOB_CONTAINER": "workers-state",
        "TMPDIR": str(temporary),
    }
    async with running_workers(tmp_path, extra) as workers, _new_connections() as session:
        assert not list(temporary.glob("otel-chatbot-state-*"))  # no SQLite file beside the blob store
        await _a_survey_moves_between_workers_and_completes(workers, session)


async def _a_survey_moves_between_workers_and_completes(workers: Workers, session: aiohttp.ClientSession) -> None:
    """Feedback surveys until one of them moved to another worker mid-dialog, each completing as in one process."""
    emulator = EmulatorClient(workers.messages_url, UNUSED_SERVICE_URL, session=session)
    sent = 0
    before = await workers.counted(session, 0)

    async def ask(text: str) -> tuple[str, str]:
        """The bot's answer, and the worker that gave it (the one whose turn count went up)."""
        nonlocal sent, before
        reply = await emulator.expect_replies(text)
        assert reply.status == 200, reply
        sent += 1
        after = await workers.counted(session, sent)
        (worker,) = [w for w in after if after[w] != before.get(w, 0.0)]
        before = after
        return " ".join(message_texts(reply.body)), worker

    for _ in range(25):
        answer, first = await ask("feedback")
        assert RATING_PROMPT in answer
        answer, second = await ask("4")
        assert COMMENT_PROMPT in answer, answer  # the worker knows the survey is waiting for a rating
        answer, third = await ask("skip")
        assert "thank" in answer.lower(), answer
        if len({first, second, third}) > 1:
            return
    raise AssertionError(f"no survey's turns landed on two workers in {sent} turns")


def _worker_processes(supervisor: int) -> list[tuple[str, int]]:
    """The supervisor's worker processes as they are now, (index, pid), an index twice while one is replaced."""
    found: list[tuple[str, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_text().split("\0")
            if "--worker" in arguments and _parent(int(entry.name)) == supervisor:
                found.append((arguments[arguments.index("--worker") + 1], int(entry.name)))
        except (OSError, ValueError, IndexError):  # exited meanwhile
            continue
    return found


def _workers_of(supervisor: int) -> dict[str, int]:
    """index -> pid (one of them while a worker is replaced)."""
    return dict(_worker_processes(supervisor))


async def test_a_hung_worker_is_killed_and_replaced_and_answers_its_share_of_connections_again(tmp_path: Path) -> None:
    """A stopped process stands for a blocked event loop: neither answers, neither runs a SIGTERM handler. Without the
    supervisor's liveness probe it stays as it is, and the kernel keeps handing it its share of new connections."""
    async with (
        running_workers(tmp_path, {"BOT_WORKER_TIMEOUT_SECONDS": "3"}) as workers,
        _new_connections() as session,
    ):
        hung = workers.pids["0"]
        os.kill(hung, signal.SIGSTOP)
        try:

            def replaced() -> tuple[int] | None:
                now = _workers_of(workers.bot.process.pid).get("0")
                return (now,) if now is not None and now != hung and not _alive(hung) else None

            (successor,) = await wait_until_async(
                replaced, timeout=WORKERS_START_TIMEOUT, interval=0.1, message="worker 0 replaced"
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung, signal.SIGCONT)
        assert f"worker 0 (pid {hung}) has not answered for 3 s (BOT_WORKER_TIMEOUT_SECONDS); killing it" in (
            workers.bot.stderr
        )
        workers.pids["0"] = successor  # for the clean-up
        assert exposition.total(await workers.scrape(session), catalog.WORKERS_HUNG) == 1

        # The successor serves the bot on the shared port: turns on new connections until it has answered some.
        sent, turns = 0, await workers.counted(session, 0)
        while turns.get("0", 0.0) == 0:
            assert sent < 200, f"after {sent} connections, turns per worker: {turns}"
            for _ in range(8):
                emulator = EmulatorClient(workers.messages_url, UNUSED_SERVICE_URL, session=session)
                reply = await emulator.expect_replies(f"help {sent}")
                assert reply.status == 200, reply
                sent += 1
            turns = await workers.counted(session, sent)  # every worker reachable: no turn was sent before the hang
        assert set(turns) == {"0", "1"}


async def test_sighup_replaces_every_worker_while_the_bot_keeps_answering_and_turns_in_flight_finish(
    tmp_path: Path,
) -> None:
    # Every turn takes a second (the fault injection's delay), so that turns are in flight while workers are replaced.
    extra = {"BOT_FAULT_DELAY_RATIO": "1", "BOT_FAULT_DELAY_SECONDS": "1"}
    async with running_workers(tmp_path, extra) as workers, _new_connections() as session:
        supervisor, old = workers.bot.process.pid, set(workers.pids.values())

        async def ask(text: str) -> list[str]:
            reply = await EmulatorClient(workers.messages_url, UNUSED_SERVICE_URL, session=session).expect_replies(text)
            assert reply.status == 200, reply
            return message_texts(reply.body)

        in_flight = [asyncio.create_task(ask(f"help {index}")) for index in range(4)]
        workers.bot.process.send_signal(signal.SIGHUP)
        # While the workers are replaced, one at a time, every turn is answered (no connection refused or reset).
        answered = 0
        while set(current := _workers_of(supervisor)) != {"0", "1"} or old & set(current.values()):
            assert answered < 100, f"after {answered} turns, workers {current}, before {old}"
            assert any(await ask(f"help during {answered}"))
            answered += 1
        workers.pids.update(current)
        assert all(any(texts) for texts in await asyncio.gather(*in_flight))
        assert workers.bot.process.returncode is None  # the supervisor kept running
        said = ["otel-chatbot: restarting 2 worker processes one at a time (SIGHUP)"]
        said += [f"otel-chatbot: worker {index} is serving (pid {pid})" for index, pid in current.items()]
        await wait_until_async(  # the lines were written before the old processes stopped, and are being read
            lambda: set(said) <= set(workers.bot.stdout), timeout=REQUEST_TIMEOUT, interval=0.05, message=str(said)
        )

        # The supervisor's /metrics follows the new processes: both reachable, with their own instance ids.
        text = await workers.scrape(session)
        assert exposition.total(text, catalog.WORKERS_UNREACHABLE) == 0
        instances = exposition.total_by(text, "target_info", catalog.WORKER)
        assert set(instances) == {"0", "1"}


async def test_sigterm_during_a_sighup_restart_stops_the_old_and_the_new_processes(tmp_path: Path) -> None:
    async with running_workers(tmp_path, {}) as workers:
        supervisor = workers.bot.process.pid
        workers.bot.process.send_signal(signal.SIGHUP)

        def three() -> list[tuple[str, int]] | None:  # worker 0's successor is starting beside the two
            found = _worker_processes(supervisor)
            return found if len(found) == 3 else None

        processes = await wait_until_async(three, timeout=WORKERS_START_TIMEOUT, interval=0.02, message="a successor")
        assert await workers.bot.terminate(STOP_TIMEOUT) == 0, workers.bot.describe()
        assert not [pid for _, pid in processes if _alive(pid)]  # the supervisor waited for each, the new one too


async def test_sigterm_stops_every_process_and_each_worker_flushes_its_telemetry(
    tmp_path: Path, ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    extra = {
        **ingestion.export_settings(tmp_path / "ai-storage"),
    }
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    async with running_workers(cwd, extra) as workers:
        async with _new_connections() as session:
            for index in range(16):
                emulator = EmulatorClient(workers.messages_url, UNUSED_SERVICE_URL, session=session)
                assert (await emulator.expect_replies(f"help {index}")).status == 200
            turns = await workers.counted(session, 16)
        # Nothing waited for the exporters: whatever is still batched must be flushed as the workers stop.
        assert await workers.bot.terminate(STOP_TIMEOUT) == 0, workers.bot.describe()
        assert not [pid for pid in workers.pids.values() if _alive(pid)]  # the supervisor waited for each
    assert workers.bot.stdout[-1] == "otel-chatbot: stopped"
    requests = ingestion.of_type("RequestData")
    assert len(requests) == 16
    instances = {envelope["tags"]["ai.cloud.roleInstance"] for envelope in requests}
    assert len(instances) == len([count for count in turns.values() if count]), instances


async def test_one_worker_is_the_single_process(tmp_path: Path) -> None:
    async with running_workers(tmp_path, {}, arguments=("--workers", "1")) as workers:
        assert workers.pids == {}
        assert workers.bot.stdout[0].endswith(" is running"), workers.bot.stdout
        assert await workers.bot.terminate() == 0, workers.bot.describe()


@pytest.mark.parametrize(
    ("arguments", "env", "named"),
    [
        (("--workers", "0"), {}, "--workers"),
        (("--workers", "many"), {}, "--workers"),
        ((), {"BOT_WORKERS": "abc"}, "BOT_WORKERS"),
        ((), {"BOT_WORKERS": "0"}, "BOT_WORKERS"),
        ((), {"BOT_TUNE_RUNTIME": "maybe"}, "BOT_TUNE_RUNTIME"),
        (("--workers", "2"), {"PORT": "0"}, "PORT"),
    ],
    ids=["flag-zero", "flag-not-a-number", "env-not-a-number", "env-zero", "tune-not-a-boolean", "port-zero"],
)
async def test_bad_worker_settings_stop_start_up_with_exit_code_2_naming_the_problem(
    tmp_path: Path, arguments: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    port, metrics_port = free_ports(2)
    settings = {"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port), **env}
    completed = await _run_to_exit(tmp_path, arguments, child_environment(settings))
    code, stdout, stderr = completed
    assert code == 2, (stdout, stderr)
    assert named in stderr, stderr
    assert "Traceback" not in stderr
    assert "is running" not in stdout


async def test_workers_refuse_a_port_something_already_listens_on(tmp_path: Path) -> None:
    """With SO_REUSEPORT the workers would otherwise share it silently (another supervisor's workers)."""
    server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        (metrics_port,) = free_ports(1)
        env = child_environment({"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port)})
        code, stdout, stderr = await _run_to_exit(tmp_path, ("--workers", "2"), env)
    finally:
        server.close()
        await server.wait_closed()
    assert code == 1, (stdout, stderr)
    assert "address already in use" in stderr.lower(), stderr
    assert "is serving" not in stdout


async def _run_to_exit(cwd: Path, arguments: tuple[str, ...], env: Mapping[str, str]) -> tuple[int, str, str]:
    process = await spawn_bot(cwd, env, *arguments)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), WORKERS_START_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")
