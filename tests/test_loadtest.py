"""The load test: SLO evaluation and reconciliation arithmetic, the pieces the users are made of, and a smoke run on
each transport against the real bot (started by the load test itself, with telemetry to the ingestion stand-in)."""

from __future__ import annotations

import ast
import functools
import http.server
import json
import math
import random
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from matplotlib.patches import Rectangle

from loadtest import charts
from loadtest.cli import make_plan, parse_args
from loadtest.conversation import Conversation, feedback_script, knowledge_questions, reply_problem
from loadtest.receiver import ReplyBoard
from loadtest.reconcile import RequestLedger, Tally, prometheus_tally, reconcile
from loadtest.report import Level, find_knee, shape_levels
from loadtest.rig.ports import free_port
from loadtest.runner import check_target
from loadtest.shapes import SHAPES, TRANSPORTS, Shape, Stage
from loadtest.slo import Measured, Objectives, evaluate, load_objectives
from loadtest.turnlog import TurnRecord, percentile, summarize
from telemetry import catalog

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT_SECONDS = 150


def _turn(trace_id: str, status: int = 201, ok: bool = True, reply_ms: float | None = 20.0) -> TurnRecord:
    return TurnRecord(
        started=0.0, name="knowledge", trace_id=trace_id, status=status, post_ms=25.0, reply_ms=reply_ms, ok=ok
    )


def _request_envelope(trace_id: str, rejection: str | None = None, synthetic: bool = True) -> dict[str, Any]:
    properties = {catalog.REJECTION_REASON: rejection} if rejection else {}
    tags = {"ai.operation.id": trace_id}
    if synthetic:
        tags["ai.operation.syntheticSource"] = "True"
    return {
        "tags": tags,
        "data": {
            "baseType": "RequestData",
            "baseData": {"name": catalog.SPAN_MESSAGES_REQUEST, "properties": properties},
        },
    }


def _ledger(*envelopes: dict[str, Any]) -> RequestLedger:
    ledger = RequestLedger()
    ledger.add(envelopes)
    return ledger


# ---- SLO evaluation -------------------------------------------------------------------------------------------


def test_a_run_within_every_objective_passes() -> None:
    checks = evaluate(Objectives(), Measured(turns=1000, failed=9, duration_s=49, reply_p95_s=1.99), 20)
    assert [check.name for check in checks] == ["reply latency p95", "error ratio", "throughput"]
    assert all(check.ok for check in checks), checks


@pytest.mark.parametrize(
    ("measured", "failing"),
    [
        (Measured(turns=1000, failed=0, duration_s=50, reply_p95_s=2.0), "reply latency p95"),  # bound is strict
        (Measured(turns=1000, failed=10, duration_s=40, reply_p95_s=0.1), "error ratio"),  # 1 % is not < 1 %
        (Measured(turns=1000, failed=1, duration_s=50, reply_p95_s=0.1), "throughput"),  # 19.98 < 20 ok turns/s
    ],
)
def test_missing_one_objective_fails_exactly_that_check(measured: Measured, failing: str) -> None:
    checks = evaluate(Objectives(), measured, target_turns_per_second=20)
    assert [check.name for check in checks if not check.ok] == [failing]


def test_failed_turns_do_not_count_as_throughput() -> None:
    checks = evaluate(Objectives(), Measured(turns=1000, failed=1000, duration_s=10, reply_p95_s=None), 2)
    assert not any(check.ok for check in checks)
    assert checks[-1].measured == "0.0 ok turns/s"


def test_a_run_without_turns_fails_everything() -> None:
    checks = evaluate(Objectives(), Measured(turns=0, failed=0, duration_s=20, reply_p95_s=None), 2)
    assert not any(check.ok for check in checks)


def test_the_slo_file_sets_defaults_and_per_shape_overrides(tmp_path: Path) -> None:
    slo = tmp_path / "slo.json"
    slo.write_text(
        json.dumps(
            {
                "reply_p95_seconds": 1.5,
                "error_ratio": 0.02,
                "shapes": {"ramp": {"reply_p95_seconds": None, "min_turns_per_second": 100}},
            }
        )
    )
    assert load_objectives(slo, "steady") == Objectives(1.5, 0.02, None)
    ramp = load_objectives(slo, "ramp")
    assert ramp == Objectives(None, 0.02, 100)
    checks = evaluate(ramp, Measured(turns=6000, failed=0, duration_s=60, reply_p95_s=9.0), 5)
    assert [(check.name, check.ok) for check in checks] == [("error ratio", True), ("throughput", True)]


def test_the_shipped_slo_file_holds_the_documented_defaults() -> None:
    shipped = ROOT / "loadtest" / "slo.json"
    assert load_objectives(shipped, "smoke") == Objectives(2.0, 0.01, None)
    assert load_objectives(shipped, "ramp") == Objectives(None, 0.01, None)  # a ramp is meant to pass the knee


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"reply_p95": 2}', '{"error_ratio": "1%"}', '{"error_ratio": -1}', '{"shapes": []}'],
)
def test_a_malformed_slo_file_is_refused_with_the_reason(tmp_path: Path, content: str) -> None:
    slo = tmp_path / "slo.json"
    slo.write_text(content)
    with pytest.raises(ValueError, match=r"slo\.json"):
        load_objectives(slo, "smoke")


def test_latency_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.95) is None
    summary = summarize([_turn("a", reply_ms=100.0), _turn("b", reply_ms=None, ok=False), _turn("c", status=0)])
    assert (summary.turns, summary.answered, summary.failed, summary.unanswered) == (3, 2, 1, 1)


# ---- reconciliation arithmetic ---------------------------------------------------------------------------------


def test_equal_counts_on_all_three_sides_reconcile() -> None:
    records = [_turn("a"), _turn("b"), _turn("c", status=500, ok=False)]  # a failed turn is still a turn
    result = reconcile(records, Tally(3), _ledger(*map(_request_envelope, "abc")), locust_posts=3)
    assert result.ok, result.problems
    assert (result.sent, result.prometheus, result.ingestion) == (Tally(3), Tally(3), Tally(3))


def test_a_turn_the_bot_did_not_count_fails_the_reconciliation() -> None:
    records = [_turn("a"), _turn("b"), _turn("c")]
    result = reconcile(records, Tally(2), _ledger(*map(_request_envelope, "abc")))
    assert not result.ok
    assert result.problems == ["turns: Prometheus counted 2, the load generator sent 3 (-1)"]


def test_a_lost_request_envelope_is_named_by_its_trace_id() -> None:
    records = [_turn("a"), _turn("b"), _turn("c")]
    result = reconcile(records, Tally(3), _ledger(_request_envelope("a"), _request_envelope("c")))
    assert not result.ok
    assert result.missing_trace_ids == ("b",)
    assert "ingestion counted 2, the load generator sent 3 (-1)" in result.problems[0]
    assert "e.g. b" in result.problems[1]


def test_load_test_requests_counted_as_real_users_fail_the_reconciliation() -> None:
    records = [_turn("a"), _turn("b")]
    result = reconcile(records, Tally(2), _ledger(_request_envelope("a"), _request_envelope("b", synthetic=False)))
    assert not result.ok
    assert result.not_synthetic == 1
    assert result.problems == [
        "1 Request envelopes lack ai.operation.syntheticSource: Application Insights would count the load test as "
        "real users"
    ]


def test_a_duplicated_envelope_fails_even_when_another_is_missing() -> None:
    records = [_turn("a"), _turn("b")]
    result = reconcile(records, Tally(2), _ledger(_request_envelope("a"), _request_envelope("a")))
    assert result.ingestion == Tally(2)  # the totals agree ...
    assert not result.ok  # ... but the trace ids do not
    assert (result.missing_trace_ids, result.unexpected_trace_ids) == (("b",), ("a",))


def test_refused_requests_are_compared_apart_from_turns() -> None:
    records = [_turn("a"), _turn("r", status=401, ok=False, reply_ms=None)]
    ledger = _ledger(_request_envelope("a"), _request_envelope("r", rejection="unauthorized"))
    assert reconcile(records, Tally(1, refused=1), ledger).ok
    wrong = reconcile(records, Tally(2, refused=0), ledger)
    assert wrong.problems == [
        "turns: Prometheus counted 2, the load generator sent 1 (+1)",
        "refused requests: Prometheus counted 0, the load generator sent 1 (-1)",
    ]


def test_a_post_without_any_response_makes_the_counts_unprovable() -> None:
    records = [_turn("a"), _turn("lost", status=0, ok=False, reply_ms=None)]
    result = reconcile(records, Tally(1), _ledger(_request_envelope("a")))
    assert not result.ok
    assert "1 POSTs got no response" in result.problems[0]


def test_the_turn_log_must_agree_with_locusts_own_count() -> None:
    result = reconcile([_turn("a")], Tally(1), _ledger(_request_envelope("a")), locust_posts=2)
    assert result.problems == ["Locust's statistics count 2 POSTs, the turn log 1"]


def test_without_access_to_the_bot_nothing_is_reconciled() -> None:
    result = reconcile([_turn("a")])
    assert not result.checked
    assert not result.ok


def test_the_ledger_keeps_only_requests_to_the_messaging_endpoint() -> None:
    other_request = _request_envelope("x")
    other_request["data"]["baseData"]["name"] = "GET /healthz"
    ledger = _ledger(
        _request_envelope("a"),
        _request_envelope("b", rejection="invalid_json"),
        other_request,
        {"data": {"baseType": "RemoteDependencyData", "baseData": {"name": "POST"}}},
    )
    assert ledger.tally == Tally(1, refused=1)
    assert ledger.other_envelopes == 2


def test_prometheus_counters_are_summed_over_labels_and_subtracted() -> None:
    turns, rejected = catalog.TURNS.prometheus_name, catalog.REQUESTS_REJECTED.prometheus_name
    before = prometheus_tally(f'{turns}{{bot_intent="welcome"}} 2.0\n')
    exposition = (
        f"# TYPE {turns.removesuffix('_total')} counter\n"
        f'{turns}{{bot_intent="welcome"}} 5.0\n'
        f'{turns}{{bot_intent="knowledge"}} 7.0\n'
        f"# TYPE {rejected.removesuffix('_total')} counter\n"
        f'{rejected}{{bot_request_rejection="invalid_json"}} 1.0\n'
    )
    assert prometheus_tally(exposition) - before == Tally(10, refused=1)


# ---- the users' building blocks --------------------------------------------------------------------------------


def test_every_activity_of_a_user_belongs_to_its_own_conversation() -> None:
    first = Conversation("emulator", "http://127.0.0.1:1", expect_replies=True)
    second = Conversation("emulator", "http://127.0.0.1:1", expect_replies=True)
    assert first.conversation_id != second.conversation_id
    assert first.user_id != second.user_id
    update, message = first.conversation_update(), first.message("hello")
    assert {update["conversation"]["id"], message["conversation"]["id"]} == {first.conversation_id}
    assert message["from"]["id"] == first.user_id
    assert message["deliveryMode"] == "expectReplies"
    assert update["id"] != message["id"]
    assert "deliveryMode" not in Conversation("emulator", "http://x", expect_replies=False).message("hi")


def test_the_survey_script_ends_with_a_comment_or_a_cancel() -> None:
    rng = random.Random(7)
    endings = {feedback_script(rng)[-1].name for _ in range(200)}
    assert endings == {"feedback: comment", "feedback: cancel"}
    assert len(knowledge_questions()) > 20


def test_replies_are_checked_for_a_message_and_the_trace_id_sent() -> None:
    message = {"type": "message", "text": "hi"}
    trace = {"type": "trace", "name": catalog.TRACE_ACTIVITY_NAME, "value": {"traceId": "t1", "outcome": "success"}}
    assert reply_problem([message, trace], "t1") is None
    assert reply_problem([trace], "t1") == "the bot sent no message"
    assert "not the t2" in (reply_problem([message, trace], "t2") or "")
    failed = {**trace, "value": {"traceId": "t1", "outcome": catalog.OUTCOME_ERROR}}
    assert reply_problem([message, failed], "t1") == "the turn failed in the bot"


def test_the_reply_board_matches_replies_by_conversation_and_reply_to_id() -> None:
    board = ReplyBoard()
    turn = board.expect("c1", "a1", sent_at=10.0)
    assert not board.deliver("c1", "other", {"type": "message"}, 10.1)
    assert not board.deliver("c2", "a1", {"type": "message"}, 10.1)
    assert board.deliver("c1", "a1", {"type": "trace"}, 10.2)
    assert not turn.wait(0)  # a trace activity is not the reply
    assert board.deliver("c1", None, {"type": "message"}, 10.25)  # channels may leave replyToId out
    assert turn.wait(0)
    assert turn.reply_seconds == pytest.approx(0.25)
    board.forget(turn)
    assert not board.deliver("c1", "a1", {"type": "message"}, 11.0)
    assert (board.received, board.unmatched) == (5, 3)


def test_shapes_tick_through_their_stages_and_scale() -> None:
    shape = Shape("t", "test", (Stage(10, 5, 5), Stage(20, 50, 10)), 4.0, (1.0, 2.0))
    assert [shape.tick(t) for t in (0, 9.9, 10, 19.9, 20)] == [(5, 5), (5, 5), (50, 10), (50, 10), None]
    assert shape.tick(5, limit=5) is None
    bigger = shape.scaled(users=100, duration=40)
    assert (bigger.peak_users, bigger.duration, bigger.target_turns_per_second) == (100, 40, 8.0)
    assert set(SHAPES) == {"smoke", "steady", "ramp", "spike", "soak"}


def test_the_knee_is_where_more_users_stop_adding_throughput() -> None:
    stages = tuple(Stage(10 * (i + 1), 10 * (i + 1), 10) for i in range(6))
    shape = Shape("r", "ramp", stages, 1, (1, 1))
    records: list[TurnRecord] = []
    for index, rate in enumerate([10, 20, 28, 29, 36, 30]):  # one bursty level must not move the knee
        for i in range(rate * 7):  # evenly over the 7 s after the users settled
            records.append(_turn(f"{index}-{i}", reply_ms=100.0 * (index + 1)))
            records[-1].started = 1000 + 10 * index + 3 + i / rate
    levels = shape_levels(records, shape, started=1000)
    assert [(level.users, round(level.turns_per_second)) for level in levels] == [
        (10, 10),
        (20, 20),
        (30, 28),
        (40, 29),
        (50, 36),
        (60, 30),
    ]
    knee = find_knee(levels, p95_objective_s=0.35)
    assert knee is not None
    assert (knee.users, round(knee.turns_per_second)) == (30, 28)
    assert "reply p95 first reached 0.35 s at 40 users" in knee.reason


def test_no_knee_while_throughput_still_grows_with_users() -> None:
    growing = [Level(users, users, 0.1) for users in range(10, 160, 10)]
    assert find_knee(growing, p95_objective_s=2.0) is None


def test_the_command_line_picks_transport_limits_and_scaling(tmp_path: Path) -> None:
    local = make_plan(parse_args(["--out", str(tmp_path)]))
    assert (local.shape.name, local.transport, local.target, local.time_limit) == ("smoke", "channel", None, 20)
    remote = make_plan(parse_args(["--target", "https://bot.example.net/api/messages", "--shape", "steady"]))
    assert remote.transport == "expectReplies"
    scaled = make_plan(parse_args(["--shape", "soak", "--users", "60", "--duration", "600", "--time-limit", "300"]))
    assert (scaled.shape.peak_users, scaled.shape.duration, scaled.time_limit) == (60, 600, 300)
    assert scaled.shape.target_turns_per_second == 2 * SHAPES["soak"].target_turns_per_second


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--target", "https://bot.example.net/api/messages", "--transport", "channel"], "channel transport"),
        (["--target", "bot.example.net"], "http"),
        (["--users", "0"], "--users"),
        (["--time-limit", "0"], "--time-limit"),
    ],
)
def test_the_command_line_refuses_what_cannot_work(argv: list[str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        make_plan(parse_args(argv))


def test_the_load_test_never_imports_the_tests() -> None:
    """The tests import the load test's rig (loadtest/rig), never the other way round."""
    for path in (ROOT / "loadtest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(name == "tests" or name.startswith("tests.") for name in names), path


# ---- charts: each plotted series is the turn log's --------------------------------------------------------------

T0 = 1_700_000_000.0


def _sent(second: float, ok: bool = True, reply_ms: float | None = 40.0, status: int = 201) -> TurnRecord:
    return TurnRecord(
        started=T0 + second,
        name="knowledge",
        trace_id="0" * 32,
        status=status,
        post_ms=10.0,
        reply_ms=reply_ms if ok else None,
        ok=ok,
    )


def _lines(figure: Any) -> dict[str, tuple[list[float], list[float]]]:
    found = {}
    for axes in figure.axes:
        for line in axes.get_lines():
            found[str(line.get_label())] = ([float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()])
    return found


def _texts(figure: Any) -> list[str]:
    return [text.get_text() for axes in figure.axes for text in axes.texts]


def test_throughput_counts_each_turn_in_the_second_it_was_sent() -> None:
    """10, 9 and 5 turns sent in seconds 0, 1 and 2 are drawn as 10, 9, 5 from second 0 (no lag, no ramp-in)."""
    records = [_sent(0.05 * n) for n in range(10)] + [_sent(1 + 0.1 * n) for n in range(9)]
    records += [_sent(2 + 0.1 * n, ok=n != 0) for n in range(5)]
    history = charts.build_history(records, started=T0)
    lines = _lines(charts.throughput_figure(history, target=10))
    assert lines["turns sent/s"] == ([0, 1, 2], [10, 9, 5])
    assert lines["of which answered/s"] == ([0, 1, 2], [10, 9, 4])
    errors = charts.errors_figure(history)
    [bars] = [axes for axes in errors.axes if axes.patches]
    assert [patch.get_height() for patch in bars.patches if isinstance(patch, Rectangle)] == [0, 0, 1]
    assert _lines(errors)["failed so far"] == ([0, 1, 2], [0, 0, 1])


def test_latency_is_the_replies_of_each_second_with_gaps_where_none_arrived() -> None:
    latencies = {0: [100.0, 300.0, 200.0], 2: [900.0]}  # second 1: turns sent, none answered
    records = [
        _sent(second + 0.1 * n, reply_ms=ms) for second, values in latencies.items() for n, ms in enumerate(values)
    ]
    records += [_sent(1.5, ok=False)]
    history = charts.build_history(records, started=T0)
    lines = _lines(charts.latency_figure(history, objective=2.0))
    xs, p95 = lines["p95"]
    assert xs == [0, 1, 2]
    assert p95[0] == percentile([0.1, 0.3, 0.2], 0.95) == 0.3
    assert math.isnan(p95[1]), "a second without a reply has no latency, not 0"
    assert p95[2] == 0.9
    assert lines["p50"][1][0] == 0.2


def test_a_dead_target_draws_labelled_empty_latency_and_every_failure() -> None:
    records = [_sent(0.2 * n, ok=False, status=0) for n in range(15)]
    history = charts.build_history(records, started=T0)
    latency = charts.latency_figure(history, objective=2.0)
    assert not any(label in _lines(latency) for label in ("p50", "p95", "p99")), "no reply: nothing to plot"
    assert "no reply arrived: no latency to show" in _texts(latency)
    assert _lines(charts.errors_figure(history))["failed so far"][1] == [5, 10, 15]


def test_a_run_without_failures_says_so_instead_of_an_empty_frame(tmp_path: Path) -> None:
    history_csv = tmp_path / "locust_stats_history.csv"
    history_csv.write_text(
        "Timestamp,User Count,Type,Name,Requests/s\n"
        f"{int(T0)},2,,Aggregated,0\n{int(T0) + 1},5,POST,knowledge,3\n{int(T0) + 1},5,,Aggregated,3\n"
    )
    history = charts.build_history([_sent(0.1), _sent(1.2)], started=T0, locust_history=history_csv)
    errors = charts.errors_figure(history)
    assert "no failed turn (2 sent)" in _texts(errors)
    assert _lines(charts.throughput_figure(history, 1))["users"] == ([0, 1], [2, 5])
    drawn = charts.draw(history, tmp_path, 1, 2.0)
    assert [path.name for path in drawn] == ["throughput.png", "latency.png", "errors.png"]


def _seconds(text: str) -> float:
    found = re.fullmatch(r"(?:(\d+) min)? ?(?:(\d+) s)?", text.strip())
    assert found, text
    assert text.strip(), text
    return int(found.group(1) or 0) * 60 + int(found.group(2) or 0)


def test_the_readme_gives_each_shapes_users_length_and_target() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| ([^|]+) \| ([\d.]+) turns/s \|$", readme, re.MULTILINE)
    assert {name for name, *_ in rows} == set(SHAPES)
    for name, users, length, target in rows:
        shape = SHAPES[name]
        assert int(users) == shape.peak_users, name
        assert _seconds(length) == shape.duration, name
        assert float(target) == shape.target_turns_per_second, name


# ---- a target that is not there ------------------------------------------------------------------------------------


def test_a_dead_target_fails_before_any_load_with_one_clear_line(tmp_path: Path) -> None:
    """Without the check, soak would run 30 minutes against nothing."""
    target = f"http://127.0.0.1:{free_port()}/api/messages"  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "loadtest", "--shape", "soak", "--target", target, "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"the target {target} does not answer" in result.stdout
    assert "no load was sent" in result.stdout
    assert not (tmp_path / "out" / "turns.csv").exists(), "Locust was started"


def test_a_target_without_a_bot_at_the_path_is_refused(tmp_path: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/api/messages"
            with pytest.raises(RuntimeError, match="answered GET with 404: no bot there"):
                check_target(url, timeout=5)
            (tmp_path / "api").mkdir()
            (tmp_path / "api" / "messages").write_text("a bot would answer 405 here")
            check_target(url, timeout=5)  # anything that answers, answers
        finally:
            server.shutdown()
            thread.join(10)


# ---- smoke runs, both transports at once -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """`python -m loadtest --shape smoke` on each transport, side by side: (exit status, output, results dir)."""
    base = tmp_path_factory.mktemp("loadtest")
    processes = {
        transport: subprocess.Popen(
            [sys.executable, "-m", "loadtest", "--shape", "smoke", "--transport", transport, "--out", base / transport],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for transport in TRANSPORTS
    }
    runs = {}
    for transport, process in processes.items():
        try:
            output, _ = process.communicate(timeout=SMOKE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        runs[transport] = (process.returncode, output, base / transport)
    return runs


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_smoke_shape_passes_its_slos_and_reconciles(
    smoke_runs: dict[str, tuple[int, str, Path]], transport: str
) -> None:
    status, output, results = smoke_runs[transport]
    assert status == 0, output
    assert "[progress]" in output  # progress is shown while it runs
    assert "VERDICT: PASS" in output
    verdict = json.loads((results / "verdict.json").read_text())
    assert verdict["passed"]
    assert all(check["ok"] for check in verdict["slo"])
    reconciliation = verdict["reconciliation"]
    assert reconciliation["passed"], reconciliation["problems"]
    sent = reconciliation["sent"]["turns"]
    assert sent >= 40  # 5 users for 20 s
    assert reconciliation["prometheus"]["turns"] == reconciliation["ingestion"]["turns"] == sent
    # Every Request of the load test reached Application Insights marked synthetic (its User-Agent).
    assert reconciliation["not_synthetic"] == 0
    assert len(verdict["slowest_turns"][0]["trace_id"]) == 32
    for name in ("report.html", "locust_stats.csv", "locust_stats_history.csv", "turns.csv", "summary.txt"):
        assert (results / name).stat().st_size > 0, name
    for chart in ("throughput.png", "latency.png", "errors.png"):
        assert (results / chart).read_bytes().startswith(b"\x89PNG"), chart
