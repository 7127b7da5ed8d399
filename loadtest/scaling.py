"""Throughput of 1, 2 and 3 bot instances behind haproxy, sharing Azurite, measured in one run (docs/scaling.md).

    .venv/bin/python -m loadtest.scaling --seconds 8 --users 24

For each instance count: a fresh cluster (loadtest/cluster.py) on the same Azurite, then `--users` concurrent users
loop through the feedback dialog (`feedback`, a rating, `skip`: every turn reads and writes blob state) with
deliveryMode expectReplies (the answer comes back in the HTTP response; no channel stand-in takes a share of the CPU)
for `--seconds`. Reported: turns/s, p50 and p95 latency as the users saw them, failed turns. Bounded in time and count;
everything on 127.0.0.1; Application Insights export goes nowhere (export off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from loadtest.azurite import Azurite, missing
from loadtest.cluster import Cluster

DIALOG = ("feedback", "4", "skip")
MAX_TURNS_PER_STEP = 200_000


async def _user(url: str, deadline: float, latencies: list[float], failures: list[str]) -> None:
    conversation = uuid.uuid4().hex
    user = uuid.uuid4().hex
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while time.monotonic() < deadline and len(latencies) < MAX_TURNS_PER_STEP:
            for text in DIALOG:
                activity: dict[str, Any] = {
                    "type": "message",
                    "id": uuid.uuid4().hex,
                    "text": text,
                    "channelId": "directline",
                    "serviceUrl": "http://127.0.0.1:9",  # never called: expectReplies answers inline
                    "from": {"id": user},
                    "recipient": {"id": "bot"},
                    "conversation": {"id": conversation},
                    "deliveryMode": "expectReplies",
                }
                start = time.perf_counter()
                try:
                    async with session.post(url, json=activity) as response:
                        await response.read()
                        ok = response.status == 200
                        if not ok:
                            failures.append(str(response.status))
                except aiohttp.ClientError as error:
                    ok = False
                    failures.append(type(error).__name__)
                if ok:
                    latencies.append(time.perf_counter() - start)


async def _drive(url: str, users: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[str] = []
    start = time.monotonic()
    await asyncio.gather(*(_user(url, start + seconds, latencies, failures) for _ in range(users)))
    elapsed = time.monotonic() - start
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {
        "turns": len(latencies),
        "turns_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(quantiles[49] * 1000, 1),
        "p95_ms": round(quantiles[94] * 1000, 1),
        "failed": len(failures),
    }


def _cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    seconds = {}
    for name, pid in processes.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seconds[name] = times.user + times.system
    return seconds


def measure(
    workdir: Path, counts: list[int], users: int, seconds: float, memory_baseline: bool = False
) -> list[dict[str, Any]]:
    azurite = Azurite(workdir / "azurite")
    azurite.start()
    results = []
    try:
        runs = [(1, "memory")] if memory_baseline else []
        for count, store in [*runs, *((count, "blob") for count in counts)]:
            cluster = Cluster(
                workdir / f"cluster-{store}-{count}",
                azurite.connection_string,
                "",  # no Application Insights export: the run measures the bot and its state store
                count,
                {"BOT_LOG_LEVEL": "WARNING"},
                store,
            )
            try:
                cluster.start()
                # A short warm-up (imports, first connections, the container), not measured.
                asyncio.run(_drive(cluster.messages_url, users, 1.0))
                processes = {
                    "azurite": azurite.pid,
                    "haproxy": cluster.balancer.pid if cluster.balancer else 0,
                    "load generator": os.getpid(),
                    **{f"bot-{m.index}": m.pid for m in cluster.members},
                }
                before = _cpu_seconds(processes)
                result = asyncio.run(_drive(cluster.messages_url, users, seconds))
                after = _cpu_seconds(processes)
                # Share of one core each process used while measured: where the time went.
                result["cpu_cores"] = {
                    name: round((after[name] - before[name]) / seconds, 2) for name in processes if name in after
                }
            finally:
                cluster.stop()
            result = {"instances": count, "store": store, **result}
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        azurite.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per instance count (max 30)")
    parser.add_argument("--users", type=int, default=24, help="concurrent users (max 200)")
    parser.add_argument("--instances", default="1,2,3", help="instance counts to measure, comma-separated")
    parser.add_argument(
        "--memory-baseline", action="store_true", help="first one instance with BOT_STATE_STORE=memory, for comparison"
    )
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.seconds <= 30 or not 1 <= arguments.users <= 200:
        parser.error("--seconds must be 1-30 and --users 1-200")
    absent = missing()
    if absent:
        print(f"Azurite is not installed ({absent}): run bash infra/dev/install.sh --test", file=sys.stderr)
        return 1
    counts = [int(part) for part in arguments.instances.split(",") if part.strip()]
    with tempfile.TemporaryDirectory(prefix="otel-chatbot-scaling-") as directory:
        results = measure(Path(directory), counts, arguments.users, arguments.seconds, arguments.memory_baseline)
    print(f"cores: {os.cpu_count()}")
    print("| instances | store | turns/s | p50 ms | p95 ms | failed | CPU (cores) while measured |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        cpu = ", ".join(f"{name} {share:g}" for name, share in row["cpu_cores"].items())
        print(
            f"| {row['instances']} | {row['store']} | {row['turns_per_second']} | {row['p50_ms']} | {row['p95_ms']} "
            f"| {row['failed']} "
            f"| {cpu} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
