"""The benchmark harness (loadtest/benchmark): a short real run writes well-formed results, and its summary computes
ratios and targets from the runs. No timing is asserted anywhere here. The worker processes it measures
(`python -m bot --workers N`) are tested in tests/test_workers.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtest.benchmark import summary, wrk

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
        "2",
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
    # 2 targets x 2 transports x (1 concurrency level + the run at half of the maximum), then `python -m bot
    # --workers 2` on expectReplies
    assert len(runs) == 9
    assert [run["workers"] for run in runs].count(2) == 1
    for run in runs:
        assert run["requests"] > 0
        assert run["ok"] == run["requests"], run
        assert {"p50", "p95", "p99"} <= run["latency_ms"].keys()
        assert run["cpu_ms_per_turn"] > 0
        assert run["peak_rss_mb"] > 0
    channel_runs = [run for run in runs if run["transport"] == wrk.CHANNEL]
    assert all(run["replies_received"] >= run["ok"] for run in channel_runs)
    single, workers = data["checks"]
    assert (single["target"], workers["target"]) == ("ours-on", "ours-2w")
    for check in (single, workers):
        assert check["problems"] == [], check
        assert check["request_envelopes"] >= check["requests_sent"]
    assert len(workers["role_instances"]) == 2
    assert set(workers["prometheus_series_per_worker"]) == {"0", "1"}
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


def test_wrk_scripts_vary_conversations_and_stay_bounded(tmp_path: Path) -> None:
    template = wrk.activity_template(wrk.EXPECT_REPLIES, "http://127.0.0.1:9", "webchat", "hi")
    script = wrk.lua_script(template, "/api/messages", tmp_path / "out.json", conversations=64, rate=100.0)
    assert "number % conversations" in script
    assert "local conversations = 64" in script
    assert "delay = function()" in script  # paced
    assert "intended send time" in script  # latency counted from when each request was due
    assert 700 <= wrk.activity_size(wrk.EXPECT_REPLIES) <= 900


def test_paced_runs_use_a_thread_per_connection() -> None:
    paced = wrk.wrk_command("wrk", "http://127.0.0.1:1/api/messages", Path("s.lua"), 8, 5.0, threads=8)
    assert "-t8" in paced
    assert "-c8" in paced
    assert "-t1" in wrk.wrk_command("wrk", "http://127.0.0.1:1/api/messages", Path("s.lua"), 8, 5.0)
