"""The scale-out drill: three bot processes sharing Azurite behind haproxy; one is killed with SIGKILL mid-run.

Bounded and loopback only: 12 users each run the feedback dialog (3 turns) through the balancer. After every user
has rated (2 turns), one instance is killed; the dialogs' last turns must land on the two others and finish correctly
from the shared state. Checked: every dialog ends with the thanks for its own rating, no activity is answered twice,
Prometheus (file service discovery) scraped all three and sees the dead one down, and the counts reconcile: turns
the users sent (answered 201) = sum of `bot_turns_total` over the instances = Request envelopes in Application
Insights, from three role instances.

The kill comes at a point where no request is in flight, so that the victim's counter and exported telemetry are
known exactly (scraped and flushed just before): what a kill during a request does is covered by the balancer's
retry of a dead connection and the bot's answer-once rule for a repeated activity id (tests/test_blob_concurrency.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.dialogs.feedback_dialog import COMMENT_PROMPT, RATING_PROMPT
from loadtest.cluster import Cluster, Instance
from loadtest.rig.ingestion import IngestionStandIn
from loadtest.rig.polling import wait_until
from loadtest.rig.ports import free_port
from loadtest.rig.processes import Child
from telemetry import catalog
from tests.support.azurite import Azurite, running_azurite
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.prerequisites import missing_prerequisite

USERS = 12
DELIVERY_ATTEMPTS = 4
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    yield from running_azurite(tmp_path / "azurite")


@pytest.fixture
def cluster(azurite: Azurite, ingestion: IngestionStandIn, tmp_path: Path) -> Iterator[Cluster]:
    if shutil.which("haproxy") is None and not os.access("/usr/sbin/haproxy", os.X_OK):
        missing_prerequisite("the cluster drill needs haproxy: run bash infra/dev/install.sh --test")
    # Telemetry leaves within a fraction of a second, so the victim's can be waited for before the kill.
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100", "BOT_REPLY_TIMEOUT_SECONDS": "5"}
    running = Cluster(tmp_path / "cluster", azurite.connection_string, ingestion.connection_string, 3, env)
    try:
        yield running.start()
    finally:
        running.stop()


@dataclass
class Deliveries:
    """What the users sent: every POST, and the activities the bot acknowledged with 201."""

    posts: int = 0
    accepted: int = 0
    failures: list[str] = field(default_factory=list)


async def deliver(session: aiohttp.ClientSession, url: str, activity: dict[str, Any], counts: Deliveries) -> None:
    """As a channel delivers: POST, and on a failure POST the same activity (same id) again, a bounded number of
    times."""
    for _ in range(DELIVERY_ATTEMPTS):
        counts.posts += 1
        try:
            async with session.post(url, json=activity) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError as error:
            counts.failures.append(type(error).__name__)
            continue
        if status == 201:
            counts.accepted += 1
            return
        counts.failures.append(str(status))
    raise AssertionError(f"activity {activity['id']} was not accepted in {DELIVERY_ATTEMPTS} attempts")


def turns_counted(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == catalog.TURNS.prometheus_name
    )


class FileDiscoveredPrometheus:
    """Prometheus scraping the job `chatbot` from a file service discovery target list, as prometheus.yml does."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "targets").mkdir(exist_ok=True)
        # The format of infra/prometheus/targets/cluster.yml.sample (JSON is YAML).
        (workdir / "targets" / "cluster.yml").write_text(
            json.dumps([{"targets": targets, "labels": {"environment": "drill"}}])
        )
        config = {
            "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
            "scrape_configs": [
                {
                    "job_name": "chatbot",
                    "metrics_path": "/metrics",
                    "file_sd_configs": [{"files": [str(workdir / "targets" / "*.yml")], "refresh_interval": "1s"}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        self.port = free_port()
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.child = Child(
            "prometheus",
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            workdir / "prometheus.log",
        )

    def up(self) -> dict[str, float]:
        query = urllib.parse.urlencode({"query": 'up{job="chatbot"}'})
        try:
            with _DIRECT.open(f"http://127.0.0.1:{self.port}/api/v1/query?{query}", timeout=2) as response:
                result = json.loads(response.read())["data"]["result"]
        except OSError:
            return {}
        return {item["metric"]["instance"]: float(item["value"][1]) for item in result}

    def stop(self) -> None:
        self.child.stop(timeout=10)


@dataclass
class User:
    client: EmulatorClient
    rating: int
    comment: str

    @property
    def thanks(self) -> str:
        noted = " and your comment was noted." if self.comment != "skip" else "."
        return f"Thank you for your feedback! You rated me {self.rating}/5{noted}"


async def say(user: User, session: aiohttp.ClientSession, url: str, text: str, counts: Deliveries) -> str:
    activity = user.client.activity("message", text)
    await deliver(session, url, activity, counts)
    return str(activity["id"])


def instance_id(member: Instance) -> str:
    # The default service.instance.id (telemetry/config.py): host name and process id.
    return f"{socket.gethostname()}-{member.pid}"


def requests_by_instance(ingestion: IngestionStandIn) -> dict[str, int]:
    counted: dict[str, int] = {}
    for envelope in ingestion.envelopes:
        if envelope["data"]["baseType"] == "RequestData":
            role = envelope["tags"]["ai.cloud.roleInstance"]
            counted[role] = counted.get(role, 0) + 1
    return counted


async def test_a_killed_instance_loses_no_dialog_and_the_counts_reconcile(
    cluster: Cluster, channel: ChannelStandIn, ingestion: IngestionStandIn, tmp_path: Path
) -> None:
    users = [
        User(
            EmulatorClient(cluster.messages_url, channel.service_url),  # (Direct Line replies carry no replyToId)
            rating=1 + number % 5,
            comment="skip" if number % 2 else f"comment {number}",
        )
        for number in range(USERS)
    ]
    prometheus = FileDiscoveredPrometheus(tmp_path / "prometheus", [m.metrics_address for m in cluster.members])
    try:
        wait_until(lambda: sorted(prometheus.up().values()) == [1.0, 1.0, 1.0], timeout=30, message="3 targets up")
        counts = Deliveries()
        sent_ids: list[str] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def rate(user: User) -> None:
                sent_ids.append(await say(user, session, cluster.messages_url, "feedback", counts))
                sent_ids.append(await say(user, session, cluster.messages_url, str(user.rating), counts))

            await asyncio.gather(*(rate(user) for user in users))
            # Mid-run: every dialog waits for its comment. The victim's count and telemetry, then SIGKILL.
            victim = cluster.members[1]
            victim_turns = turns_counted(victim.scrape())
            assert victim_turns > 0, "round robin gave the victim no turn"
            await asyncio.to_thread(
                wait_until,
                lambda: requests_by_instance(ingestion).get(instance_id(victim), 0) == victim_turns,
                timeout=20,
                message="the victim's Requests exported",
            )
            os.kill(victim.pid, signal.SIGKILL)
            await asyncio.to_thread(victim.child.process.wait, 10)

            async def finish(user: User) -> None:
                sent_ids.append(await say(user, session, cluster.messages_url, user.comment, counts))

            await asyncio.gather(*(finish(user) for user in users))

        # Every dialog completed correctly, each activity answered exactly once.
        for user in users:
            texts = [m.get("text") or "" for m in channel.messages(user.client.conversation_id)]
            assert len(texts) == 3, texts
            assert texts[0].startswith(RATING_PROMPT), texts
            assert texts[1].startswith(COMMENT_PROMPT), texts
            assert texts[2] == user.thanks, texts
        # The reply's URL names the activity it answers (/v3/conversations/{id}/activities/{replyToId}).
        answered = [
            str(request.activity_id)
            for u in users
            for request in channel.requests(u.client.conversation_id)
            if request.method == "POST" and request.activity and request.activity.get("type") == "message"
        ]
        assert sorted(answered) == sorted(sent_ids), "an activity answered twice or not at all"

        # Prometheus found all three through the target file and sees the victim down.
        victim_address = victim.metrics_address
        await asyncio.to_thread(
            wait_until,
            lambda: prometheus.up().get(victim_address) == 0.0,
            timeout=20,
            message="the victim's target down",
        )
        assert sorted(prometheus.up().values()) == [0.0, 1.0, 1.0]

        survivors = [m for m in cluster.members if m is not victim]
        survivor_turns = [turns_counted(m.scrape()) for m in survivors]
        sent = len(sent_ids)
        assert sent == 3 * USERS
        assert counts.accepted == sent, counts
        assert victim_turns + sum(survivor_turns) == sent, (victim_turns, survivor_turns, counts)

        # Application Insights: one Request per turn, from three role instances (the survivors flush on SIGTERM).
        cluster.stop()
        await asyncio.to_thread(
            wait_until,
            lambda: sum(requests_by_instance(ingestion).values()) >= sent,
            timeout=30,
            message="every Request exported",
        )
        by_instance = requests_by_instance(ingestion)
        assert sum(by_instance.values()) == sent, by_instance
        assert set(by_instance) == {instance_id(m) for m in cluster.members}
        report = {
            "sent": sent,
            "posts": counts.posts,
            "retried_by_client": counts.failures,
            "bot_turns_total": {f"bot-{m.index}": n for m, n in zip(survivors, survivor_turns, strict=True)}
            | {f"bot-{victim.index} (killed)": victim_turns},
            "requests_by_role_instance": by_instance,
        }
        print("cluster drill:", json.dumps(report))
    finally:
        prometheus.stop()
        for user in users:
            await user.client.close()
