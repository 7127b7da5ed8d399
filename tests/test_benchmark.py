"""The benchmark harness (loadtest/benchmark): a short real run writes well-formed results; the worker processes
keep Prometheus series apart and conversation state shared. No timing is asserted anywhere here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.dialogs.feedback_dialog import COMMENT_PROMPT, RATING_PROMPT
from bot.settings import Settings
from loadtest.benchmark import summary, wrk
from loadtest.benchmark.workers import SqliteStateStorage, merge, render
from tests.support.emulator import EmulatorClient
from tests.support.polling import wait_until

PROJECT_ROOT = Path(__file__).resolve().parent.parent
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")


def _python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "Microsoft"))}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.update(extra)
    return env


@needs_wrk
def test_a_short_run_writes_well_formed_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "loadtest.benchmark",
        "--targets",
        "ceiling,ours-on",
        "--connections",
        "2",
        "--warmup",
        "0",
        "--duration",
        "2",
        "--workers",
        "",
        "--out",
        str(out),
    ]
    completed = subprocess.run(
        command, cwd=PROJECT_ROOT, env=_python_env(), capture_output=True, text=True, timeout=180, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads((out / "results.json").read_text())
    assert {"machine", "plan", "runs", "checks", "summary", "command"} <= data.keys()
    runs = data["runs"]
    # 2 targets x 2 transports x (1 concurrency level + the run at half of the maximum)
    assert len(runs) == 8
    for run in runs:
        assert run["requests"] > 0
        assert run["ok"] == run["requests"], run
        assert {"p50", "p95", "p99"} <= run["latency_ms"].keys()
        assert run["cpu_ms_per_turn"] > 0
        assert run["peak_rss_mb"] > 0
    channel_runs = [run for run in runs if run["transport"] == wrk.CHANNEL]
    assert all(run["replies_received"] >= run["ok"] for run in channel_runs)
    (check,) = data["checks"]
    assert check["target"] == "ours-on"
    assert check["problems"] == []
    assert check["request_envelopes"] >= check["requests_sent"]
    names = {goal["name"] for goal in data["summary"]["targets"]}
    assert any(name.startswith("p99 at half") for name in names)
    text = (out / "results.md").read_text()
    assert text.startswith("# otel-chatbot benchmark")
    for heading in ("## Targets", "## Ratios", "## All runs", "## Exactness"):
        assert heading in text
    assert "bare aiohttp handler (ceiling)" in text


def _run(target: str, transport: str, connections: int, turns: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "target": target,
        "transport": transport,
        "connections": connections,
        "workers": None,
        "rate": None,
        "requests": 100,
        "failed": 0,
        "turns_per_second": turns,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
        "cpu_ms_per_turn": cpu,
        "peak_rss_mb": 50.0,
        "load_generator_cpu": 0.2,
        "background_cpu": 0.0,
        "statuses": {"200": 100},
        **extra,
    }


def test_the_summary_computes_ratios_and_targets_from_the_runs() -> None:
    runs = [
        _run("stock", wrk.EXPECT_REPLIES, 16, 50.0, 20.0),
        _run("stock", wrk.EXPECT_REPLIES, 64, 60.0, 19.0),
        _run("ours-off", wrk.EXPECT_REPLIES, 16, 1000.0, 1.0),
        _run("ours-on", wrk.EXPECT_REPLIES, 16, 500.0, 1.2),
        _run("ours-on", wrk.EXPECT_REPLIES, 16, 250.0, 1.5, rate=250.0, latency_ms={"p50": 2, "p95": 9, "p99": 60}),
        {**_run("ours-on", wrk.EXPECT_REPLIES, 64, 300.0, 2.0), "workers": 1},
        {**_run("ours-on", wrk.EXPECT_REPLIES, 64, 540.0, 2.0), "workers": 2},
    ]
    data = {
        "plan": {"targets": ["stock", "ours-off", "ours-on"], "transports": [wrk.EXPECT_REPLIES]},
        "runs": runs,
        "checks": [],
    }
    result = summary.summarize(data)
    ratios = result["by_transport"][wrk.EXPECT_REPLIES]["ratios"]
    assert ratios["ours_on_vs_stock"] == pytest.approx(500 / 60, abs=0.01)
    assert ratios["cpu_ours_on_vs_off"] == pytest.approx(1.2)
    assert result["workers"]["scaling_1_to_2"] == pytest.approx(1.8)
    goals = {goal["name"]: goal for goal in result["targets"]}
    on = summary.VARIANT_NAMES["ours-on"]
    assert goals[f"{on} / stock, {wrk.EXPECT_REPLIES}"]["met"] is False
    assert goals[f"CPU per turn, {on} / telemetry off, {wrk.EXPECT_REPLIES} (16 connections)"]["met"] is True
    assert goals[f"p99 at half of max throughput, {on}, {wrk.EXPECT_REPLIES}"]["met"] is False
    assert goals["throughput 2 workers / 1 worker"]["met"] is True


def test_prometheus_expositions_of_workers_are_joined_apart_never_summed() -> None:
    exposition = (
        "# HELP bot_turns_total Bot turns\n# TYPE bot_turns_total counter\n"
        'bot_turns_total{bot_channel="webchat"} 3.0\n'
        "# HELP target_info Target metadata\n# TYPE target_info gauge\n"
        'target_info{service_instance_id="host-1"} 1.0\n'
    )
    other = exposition.replace("3.0", "4.0").replace("host-1", "host-2")
    text = render(merge([("0", exposition), ("1", other)])).decode()
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    turns = [(labels["worker"], value) for name, labels, value in samples if name == "bot_turns_total"]
    assert sorted(turns) == [("0", 3.0), ("1", 4.0)]
    instances = {labels["service_instance_id"] for name, labels, _ in samples if name == "target_info"}
    assert instances == {"host-1", "host-2"}
    assert text.count("# TYPE bot_turns_total counter") == 1


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


async def test_a_conversation_continues_when_its_turns_land_on_different_workers(tmp_path: Path) -> None:
    """Two applications sharing the state file stand for two worker processes."""
    runners, urls = [], []
    storages = [SqliteStateStorage(tmp_path / "state.db") for _ in range(2)]
    settings = Settings.from_env({"PORT": "0", "BOT_METRICS_PORT": "0", "BOT_TELEMETRY_HASH_KEY": "k"})
    try:
        for storage in storages:
            runner = web.AppRunner(create_app(settings, storage=storage))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/api/messages")
        async with aiohttp.ClientSession() as session:
            workers = [EmulatorClient(url, "http://127.0.0.1:9", session=session) for url in urls]
            workers[1].conversation_id, workers[1].user_id = workers[0].conversation_id, workers[0].user_id

            async def say(worker: int, text: str) -> list[str]:
                response = await workers[worker].expect_replies(text)
                assert response.status == 200
                return [a.get("text", "") for a in response.body["activities"] if a["type"] == "message"]

            assert RATING_PROMPT in await say(0, "feedback")
            assert COMMENT_PROMPT in await say(1, "4")  # the other worker knows the survey is waiting for a rating
            assert "thank" in " ".join(await say(0, "skip")).lower()
    finally:
        for runner in runners:
            await runner.cleanup()
        for storage in storages:
            storage.close()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    port, metrics_port = _free_port(), _free_port()
    env = _python_env(PORT=str(port), BOT_METRICS_PORT=str(metrics_port), BOT_TELEMETRY_HASH_KEY="k")
    env["OTEL_RESOURCE_ATTRIBUTES"] = "service.instance.id=benchmark-test"
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.benchmark.workers", "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(metrics_port) and _answers(port), timeout=60, interval=0.1, message="workers")
        yield port, metrics_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def test_worker_processes_are_scraped_as_one_target_with_a_series_per_worker(
    two_workers: tuple[int, int],
) -> None:
    port, metrics_port = two_workers
    sent = 24
    async with aiohttp.ClientSession() as session:
        for index in range(sent):  # new connections: the kernel spreads them over the workers
            client = EmulatorClient(f"http://127.0.0.1:{port}/api/messages", "http://127.0.0.1:9")
            try:
                assert (await client.expect_replies(f"help {index}")).status == 200
            finally:
                await client.close()
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            text = await response.text()
    turns: dict[str, float] = {}
    instances: dict[str, str] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)
            if sample.name == "bot_turns_total":
                worker = sample.labels["worker"]
                turns[worker] = turns.get(worker, 0) + sample.value
            if sample.name == "target_info":
                instances[sample.labels["worker"]] = sample.labels["service_instance_id"]
    assert sum(turns.values()) == sent  # every turn counted once
    assert instances == {"0": "benchmark-test-w0", "1": "benchmark-test-w1"}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_wrk_scripts_vary_conversations_and_stay_bounded(tmp_path: Path) -> None:
    template = wrk.activity_template(wrk.EXPECT_REPLIES, "http://127.0.0.1:9", "webchat", "hi")
    script = wrk.lua_script(template, "/api/messages", tmp_path / "out.json", conversations=64, rate=100.0)
    assert "n % conversations" in script
    assert "local conversations = 64" in script
    assert "delay = function()" in script  # paced
    assert 700 <= wrk.activity_size(wrk.EXPECT_REPLIES) <= 900
