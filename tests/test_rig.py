"""The helpers the tests and the load test share (loadtest/rig), and that they stay out of what ships."""

from __future__ import annotations

import ast
import json
import socket
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import setuptools

from loadtest.rig import activities, exposition
from loadtest.rig.ingestion import EnvelopeCounts, IngestionStandIn
from loadtest.rig.polling import wait_until
from loadtest.rig.ports import free_ports
from loadtest.rig.processes import Child, terminate
from loadtest.rig.progress import LOCUST, ProgressLog
from telemetry import catalog

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("bot", "telemetry")
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wheel_packages() -> list[str]:
    """The packages `pip wheel .` puts in the wheel: setuptools' own discovery, run on pyproject.toml's settings."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    find = settings["packages"]["find"]
    assert find.get("namespaces", True), "the discovery below assumes setuptools' default (namespace packages)"
    found = setuptools.find_namespace_packages(
        where=str(ROOT / find.get("where", ["."])[0]), include=find["include"], exclude=find.get("exclude", ())
    )
    return sorted(found)


def test_the_wheel_holds_the_bot_and_its_telemetry_only() -> None:
    packages = _wheel_packages()
    assert {package.split(".")[0] for package in packages} == set(SHIPPED), packages
    every_package = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in ROOT.glob("[bt]*/**/__init__.py")}
    assert {p for p in every_package if p.split(".")[0] in SHIPPED} <= set(packages), "a subpackage left out"
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert all(name.split(".")[0] in SHIPPED for name in settings.get("package-data", {}))


def test_what_ships_never_imports_the_rig_the_load_test_or_the_tests() -> None:
    """The wheel would break at import otherwise: neither package is in it."""
    for package in SHIPPED:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                else:
                    continue
                assert not any(name.split(".")[0] in ("loadtest", "tests") for name in names), (path, names)


def test_free_ports_differ_and_nothing_listens_on_them() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))


def _child_that_ready_on_sigterm(tmp_path: Path, on_sigterm: str) -> Child:
    """A Python child whose SIGTERM handler is `on_sigterm` (a statement), once it says the handler is set."""
    code = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: {on_sigterm})\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    child = Child("sleeper", [sys.executable, "-c", code], tmp_path / "child.log")
    wait_until(lambda: "ready" in child.log_tail(), timeout=30, message="the child's SIGTERM handler")
    return child


def test_a_child_is_stopped_with_sigterm_and_keeps_its_exit_code(tmp_path: Path) -> None:
    child = _child_that_ready_on_sigterm(tmp_path, "sys.exit(3)")
    assert child.stop(timeout=30) == 3
    assert child.stop(timeout=30) == 3  # stopping again is harmless


def test_a_child_that_ignores_sigterm_is_killed_after_the_deadline(tmp_path: Path) -> None:
    child = _child_that_ready_on_sigterm(tmp_path, "None")
    assert terminate(child.process, timeout=0.2) == -9
    child.stop()


EXPOSITION = """\
# HELP bot_turns_total Bot turns processed
# TYPE bot_turns_total counter
bot_turns_total{bot_intent="help",worker="0"} 2.0
bot_turns_total{bot_intent="fallback",worker="1"} 3.0
bot_turns_total{bot_intent="help",worker="1"} 4.0
# HELP bot_requests_rejected_total Requests refused
# TYPE bot_requests_rejected_total counter
bot_requests_rejected_total{reason="bad_json"} 1.0
"""


def test_the_exposition_tally_finds_series_by_catalog_name() -> None:
    assert exposition.total(EXPOSITION, catalog.TURNS) == 9
    assert exposition.total(EXPOSITION, catalog.TURNS, bot_intent="help") == 6
    assert exposition.total_by(EXPOSITION, catalog.TURNS, "worker") == {"0": 2, "1": 7}
    assert exposition.total(EXPOSITION, catalog.REQUESTS_REJECTED) == 1
    assert exposition.total(EXPOSITION, "bot_turns_total") == exposition.total(EXPOSITION, catalog.TURNS)
    assert exposition.duplicate_series(EXPOSITION) == []
    doubled = EXPOSITION + 'bot_requests_rejected_total{reason="bad_json"} 1.0\n'
    assert exposition.duplicate_series(doubled) == ["bot_requests_rejected_total {'reason': 'bad_json'}"]


def test_activities_address_the_one_bot_account() -> None:
    user = {"id": "u1", "name": "Ann"}
    message = activities.activity(
        "message", channel_id="emulator", service_url="http://127.0.0.1:9", conversation_id="c", user=user, text="hi"
    )
    assert message["recipient"] == {**activities.BOT_ACCOUNT, "role": "bot"}
    assert message["from"] == {**user, "role": "user"}
    assert (message["text"], message["textFormat"], message["conversation"]) == ("hi", "plain", {"id": "c"})
    assert activities.members_added(user) == [dict(activities.BOT_ACCOUNT), user]


def test_progress_lines_carry_their_tag(capsys: pytest.CaptureFixture[str]) -> None:
    ProgressLog("benchmark").line("layout: 2 cores")
    LOCUST.line("5s  users 1")
    assert capsys.readouterr().out.splitlines() == ["[benchmark] layout: 2 cores", "[progress] 5s  users 1"]


def test_a_counting_ingestion_keeps_counts_not_envelopes() -> None:
    counts = EnvelopeCounts()
    request = {
        "tags": {"ai.cloud.roleInstance": "host-1"},
        "data": {"baseType": "RequestData", "baseData": {"name": catalog.SPAN_MESSAGES_REQUEST}},
    }
    body = json.dumps([request, request, {"data": {"baseType": "EventData"}}]).encode()
    with IngestionStandIn(keep=counts.add) as ingestion:
        upload = urllib.request.Request(f"{ingestion.base_url}/v2.1/track", data=body, method="POST")
        with _DIRECT.open(upload, timeout=10) as response:
            assert json.loads(response.read())["itemsAccepted"] == 3
        assert ingestion.envelopes == []
    assert counts.snapshot() == ({"RequestData": 2, "EventData": 1}, 2, ["host-1"])
