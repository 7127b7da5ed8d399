"""An Application Insights outage drill: the real bot (`python -m bot`) at a steady rate, the ingestion stand-in failing
for a while, then either the same traffic or none at all after it recovers.

    python -m loadtest.outage_drill --fault 503 --outage 60 --after idle --out results/outage-503-idle

Prints (and writes to `--out`/drill.json) the Requests delivered against the turns sent, envelopes delivered twice,
how long after the recovery the last Request of the turns sent until then arrived, and the reply latency (p50/p99 of
the Emulator-protocol round trip with `expectReplies`) before and during the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.localbot import start_bot
from loadtest.rig import activities
from loadtest.rig.activities import EXPECT_REPLIES, Activity
from loadtest.rig.ingestion import IngestionStandIn

ROOT = Path(__file__).resolve().parents[1]
WAIT_AFTER_RECOVERY_SECONDS = 120.0


def _activity(conversation: str, user: str, number: int) -> Activity:
    return activities.activity(
        "message",
        channel_id="directline",
        service_url="http://127.0.0.1:9",  # never contacted: every turn uses deliveryMode expectReplies
        conversation_id=conversation,
        user={"id": user},
        text="what can you do?",
        # Not a bare hex uuid: the privacy redaction takes some of those (two letters, two digits, ...) for IBANs.
        id=f"drill-turn-{number}",
        deliveryMode=EXPECT_REPLIES,
    )


class Driver:
    """Sends turns at a fixed rate (open loop: each at its scheduled time, whatever the earlier ones do)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, rate: float) -> None:
        self.session, self.url, self.rate = session, url, rate
        self.sent: list[str] = []
        self.failed = 0
        self.numbered = 0

    async def run(self, seconds: float) -> list[float]:
        latencies: list[float] = []
        start = time.monotonic()
        tasks = []
        conversation, user = uuid.uuid4().hex, uuid.uuid4().hex
        for index in range(int(seconds * self.rate)):
            delay = start + index / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.numbered += 1
            activity = _activity(conversation, user, self.numbered)
            tasks.append(asyncio.ensure_future(self._one(activity, latencies)))
        await asyncio.gather(*tasks)
        return latencies

    async def _one(self, activity: dict[str, Any], latencies: list[float]) -> None:
        self.sent.append(activity["id"])
        began = time.perf_counter()
        async with self.session.post(self.url, json=activity) as response:
            await response.read()
            if response.status != 200:
                self.failed += 1
        latencies.append(time.perf_counter() - began)


def _percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1)}


def _request_ids(ingestion: IngestionStandIn) -> Counter[str]:
    ids = (
        envelope["data"]["baseData"].get("properties", {}).get("bot.activity.id")
        for envelope in ingestion.of_type("RequestData")
    )
    return Counter(str(activity_id) for activity_id in ids if activity_id)


async def _drive(args: argparse.Namespace, ingestion: IngestionStandIn, url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        driver = Driver(session, url, args.rate)
        before = await driver.run(args.before)
        port = ingestion.port
        if args.fault == "down":
            ingestion.stop()
        else:
            ingestion.fail_with(int(args.fault))
        during = await driver.run(args.outage)
        if args.fault == "down":
            ingestion.start(port=port)
        else:
            ingestion.recover()
        recovered = time.monotonic()
        owed = set(driver.sent)
        traffic = None
        if args.after == "traffic":
            traffic = asyncio.ensure_future(driver.run(WAIT_AFTER_RECOVERY_SECONDS))
        recovery: float | None = None
        while time.monotonic() - recovered < WAIT_AFTER_RECOVERY_SECONDS:
            if owed <= set(_request_ids(ingestion)):
                recovery = time.monotonic() - recovered
                break
            await asyncio.sleep(0.5)  # a drill's sampling period, not synchronisation
        if traffic is not None:
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
    return {
        "owed": owed,
        "recovery": recovery,
        "sent": set(driver.sent),
        "failed": driver.failed,
        "before": before,
        "during": during,
    }


def drill(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ingestion = IngestionStandIn().start()
    bot = start_bot(out, ingestion.connection_string, ROOT)
    try:
        run = asyncio.run(_drive(args, ingestion, bot.messages_url))
    finally:
        bot.stop()  # SIGTERM: the bot flushes what it still holds
    delivered = _request_ids(ingestion)
    ingestion.stop()
    owed, sent, recovery = run["owed"], run["sent"], run["recovery"]
    result = {
        "fault": args.fault,
        "outage_s": args.outage,
        "after_recovery": args.after,
        "rate_per_s": args.rate,
        "turns_until_recovery": len(owed),
        "their_requests_delivered_within_120s": len(owed) if recovery is not None else None,
        "recovery_s": None if recovery is None else round(recovery, 1),
        "turns_in_all": len(sent),
        "requests_delivered_by_exit": len(sent & set(delivered)),
        "delivered_twice": sum(1 for count in delivered.values() if count > 1),
        "failed_turns": run["failed"],
        "before": _percentiles(run["before"]),
        "during": _percentiles(run["during"]),
    }
    (out / "drill.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fault", default="503", help="HTTP status the endpoint answers, or 'down' (refused)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the endpoint fails")
    parser.add_argument("--before", type=float, default=10.0, help="seconds of traffic before the outage")
    parser.add_argument("--rate", type=float, default=20.0, help="turns per second")
    parser.add_argument("--after", choices=("traffic", "idle"), default="idle", help="traffic after the recovery")
    parser.add_argument("--out", default="results/outage-drill")
    print(json.dumps(drill(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
