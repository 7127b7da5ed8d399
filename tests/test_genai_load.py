"""The model load shape runs the real bot process against the model stand-in and reconciles tokens three ways."""

from __future__ import annotations

from pathlib import Path

from loadtest.model_load import Outcome, main, run

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_model_load_reconciles_tokens_stand_in_prometheus_application_insights(
    tmp_path: Path, azure_sdk_offline: None
) -> None:
    outcome = run(users=3, turns=30, seconds=20, results=tmp_path, project_root=ROOT)
    assert outcome.problems == []
    assert outcome.turns == 30
    assert outcome.served["output"] > 0
    assert outcome.prometheus == outcome.application_insights == {k: float(v) for k, v in outcome.served.items()}


def test_the_shape_is_bounded_and_writes_its_outcome(tmp_path: Path) -> None:
    # A run of at most one second and one turn: bounded whatever is asked.
    assert main(["--users", "1", "--turns", "1", "--seconds", "0", "--results", str(tmp_path)]) == 0
    assert (tmp_path / "outcome.json").is_file()


def test_a_token_mismatch_is_a_problem() -> None:
    served = {"input": 10, "output": 5}
    outcome = Outcome(
        turns=1,
        unanswered=0,
        seconds=1.0,
        turns_per_second=1.0,
        latency_p50_ms=1.0,
        latency_p95_ms=1.0,
        served=served,
        prometheus={"input": 10.0, "output": 5.0},
        application_insights={"input": 10.0, "output": 4.0},
        model_answers=1.0,
    )
    assert outcome.problems == [
        "Application Insights received {'input': 10.0, 'output': 4.0} tokens, the model served "
        "{'input': 10.0, 'output': 5.0}"
    ]
