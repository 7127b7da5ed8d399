"""The headline of a benchmark run: maxima, ratios and the issue's targets, computed from the recorded runs; and the
Markdown rendering of the whole result (results.md beside results.json)."""

from __future__ import annotations

from typing import Any

from loadtest.benchmark import wrk

TARGET_OURS_STOCK = {wrk.EXPECT_REPLIES: 10.0, wrk.CHANNEL: 5.0}
TARGET_TELEMETRY_CPU = 1.3
TARGET_P99_HALF_LOAD_MS = 50.0
TARGET_WORKER_SCALING = 1.7
P99_CONNECTIONS = 16
BACKGROUND_WARNING_CORES = 0.15
OURS = ("ours-off", "ours-on", "ours-untuned", "ours-sampled")
TELEMETRY_VARIANTS = ("ours-on", "ours-untuned", "ours-sampled")
VARIANT_NAMES = {
    "ours-off": "ours (telemetry off)",
    "ours-on": "ours (full telemetry, 100 % traced)",
    "ours-untuned": "ours (full telemetry, 100 % traced, start-up settings off)",
    "ours-sampled": "ours (full telemetry, default sampler: traces capped by rate under overload)",
}

Run = dict[str, Any]


def _fixed(runs: list[Run], target: str, transport: str) -> list[Run]:
    return [
        run
        for run in runs
        if run["target"] == target and run["transport"] == transport and run["workers"] is None and run["rate"] is None
    ]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def _at(runs: list[Run], connections: int) -> Run | None:
    """The run at `connections`, else the one nearest to it."""
    if not runs:
        return None
    return min(runs, key=lambda run: (abs(run["connections"] - connections), run["connections"]))


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    runs: list[Run] = data["runs"]
    targets: list[str] = list(data["plan"]["targets"])
    by_transport: dict[str, Any] = {}
    for transport in data["plan"]["transports"]:
        maxima: dict[str, float] = {}
        best_connections: dict[str, int] = {}
        at_p99: dict[str, Run] = {}
        half: dict[str, Run] = {}
        for target in targets:
            fixed = _fixed(runs, target, transport)
            if not fixed:
                continue
            best = max(fixed, key=lambda run: run["turns_per_second"])
            maxima[target] = best["turns_per_second"]
            best_connections[target] = best["connections"]
            nearest = _at(fixed, P99_CONNECTIONS)
            if nearest is not None:
                at_p99[target] = nearest
            paced = [
                run
                for run in runs
                if run["target"] == target and run["transport"] == transport and run["rate"] is not None
            ]
            if paced:
                half[target] = paced[-1]
        off = at_p99.get("ours-off")
        ratios: dict[str, float | None] = {}
        for variant in OURS:
            key = variant.replace("-", "_")
            ratios[f"{key}_vs_stock"] = _ratio(maxima.get(variant), maxima.get("stock"))
            ratios[f"{key}_vs_ceiling"] = _ratio(maxima.get(variant), maxima.get("ceiling"))
            if variant != "ours-off":
                run = at_p99.get(variant)
                ratios[f"cpu_{key}_vs_off"] = _ratio(
                    run["cpu_ms_per_turn"] if run else None, off["cpu_ms_per_turn"] if off else None
                )
                ratios[f"throughput_off_vs_{key}"] = _ratio(maxima.get("ours-off"), maxima.get(variant))
        by_transport[transport] = {
            "max_turns_per_second": maxima,
            "best_connections": best_connections,
            "at_connections": {
                target: {
                    "connections": run["connections"],
                    "turns_per_second": run["turns_per_second"],
                    "p99_ms": run["latency_ms"].get("p99"),
                    "cpu_ms_per_turn": run["cpu_ms_per_turn"],
                }
                for target, run in at_p99.items()
            },
            "half_load": {
                target: {
                    "rate": run["rate"],
                    "turns_per_second": run["turns_per_second"],
                    "p50_ms": run["latency_ms"].get("p50"),
                    "p95_ms": run["latency_ms"].get("p95"),
                    "p99_ms": run["latency_ms"].get("p99"),
                    "cpu_ms_per_turn": run["cpu_ms_per_turn"],
                }
                for target, run in half.items()
            },
            "ratios": ratios,
        }
    worker_runs = [run for run in runs if run["workers"] is not None]
    workers = {str(run["workers"]): run["turns_per_second"] for run in worker_runs}
    scaling = _ratio(workers.get("2"), workers.get("1"))
    summary: dict[str, Any] = {
        "by_transport": by_transport,
        "workers": {"turns_per_second": workers, "scaling_1_to_2": scaling},
        "targets": _targets(by_transport, scaling, data.get("checks", [])),
        "notes": _notes(data),
    }
    return summary


def _goal(name: str, goal: str, value: float | None, met: bool | None) -> dict[str, Any]:
    return {"name": name, "goal": goal, "value": value, "met": met}


def _targets(by_transport: dict[str, Any], scaling: float | None, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for transport, threshold in TARGET_OURS_STOCK.items():
        ratios = by_transport.get(transport, {}).get("ratios", {})
        for variant in TELEMETRY_VARIANTS:
            value = ratios.get(f"{variant.replace('-', '_')}_vs_stock")
            if value is not None:
                goals.append(
                    _goal(
                        f"{VARIANT_NAMES[variant]} / stock, {transport}",
                        f">= {threshold:g}",
                        value,
                        _ge(value, threshold),
                    )
                )
    for transport in by_transport:
        for variant in ("ours-on", "ours-untuned"):
            value = by_transport[transport]["ratios"].get(f"cpu_{variant.replace('-', '_')}_vs_off")
            if value is not None:
                goals.append(
                    _goal(
                        f"CPU per turn, {VARIANT_NAMES[variant]} / telemetry off, {transport} "
                        f"({P99_CONNECTIONS} connections)",
                        f"<= {TARGET_TELEMETRY_CPU:g}",
                        value,
                        value <= TARGET_TELEMETRY_CPU,
                    )
                )
    for transport in by_transport:
        for variant in TELEMETRY_VARIANTS:
            half = by_transport[transport]["half_load"].get(variant)
            if half is not None:
                value = half["p99_ms"]
                goals.append(
                    _goal(
                        f"p99 at half of max throughput, {VARIANT_NAMES[variant]}, {transport}",
                        f"<= {TARGET_P99_HALF_LOAD_MS:g} ms",
                        value,
                        None if value is None else value <= TARGET_P99_HALF_LOAD_MS,
                    )
                )
    goals.append(_goal("throughput 2 workers / 1 worker", f">= {TARGET_WORKER_SCALING:g}", scaling, _ge(scaling, 1.7)))
    if checks:
        problems = sum(len(check["problems"]) for check in checks)
        goals.append(
            _goal(
                "every turn counted in Prometheus, every span exported or counted",
                "no problem",
                float(problems),
                problems == 0,
            )
        )
    return goals


def _ge(value: float | None, threshold: float) -> bool | None:
    return None if value is None else value >= threshold


def _notes(data: dict[str, Any]) -> list[str]:
    notes = []
    busy = [run for run in data["runs"] if run["background_cpu"] > BACKGROUND_WARNING_CORES]
    if busy:
        worst = max(busy, key=lambda run: run["background_cpu"])
        notes.append(
            f"{len(busy)} of {len(data['runs'])} runs shared the machine with other work "
            f"(up to {worst['background_cpu']:.2f} cores busy outside the benchmark): their figures are lower"
        )
    failed = [run for run in data["runs"] if run["failed"]]
    for run in failed:
        notes.append(
            f"{run['target']} {run['transport']} c={run['connections']}: {run['failed']} of {run['requests']} "
            f"requests failed (statuses {run['statuses']})"
        )
    for check in data.get("checks", []):
        notes.extend(f"{check['target']}: {problem}" for problem in check["problems"])
    return notes


# ---- Markdown ----------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "-"}[met]


def markdown(data: dict[str, Any], command: str) -> str:
    summary = data["summary"]
    labels = data["plan"]["labels"]
    machine = data["machine"]
    lines = [
        "# otel-chatbot benchmark",
        "",
        f"- command: `{command}`",
        f"- run: {data['started']} to {data['finished']} (UTC)",
        f"- machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gb']} GB, {machine['os']}, "
        f"Python {machine['python']}, {machine['wrk']}",
        f"- layout: {data['layout']['note']}",
        "- packages: " + ", ".join(f"{name} {version}" for name, version in machine["packages"].items()),
        f"- load: wrk, one activity of {data['plan']['activity_bytes'][wrk.EXPECT_REPLIES]} bytes "
        f"(`{data['plan']['text']}`, channel `{data['plan']['channel_id']}`), {data['plan']['conversations']} "
        f"conversations in turn; {data['plan']['warmup']:g} s warm-up and {data['plan']['duration']:g} s measured "
        "per run",
        "",
        "## Targets",
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
    ]
    for goal in summary["targets"]:
        digits = 0 if goal["name"].startswith("every turn") else 2
        lines.append(f"| {goal['name']} | {goal['goal']} | {_fmt(goal['value'], digits)} | {_mark(goal['met'])} |")
    lines += ["", "## Ratios", ""]
    lines += ["| ratio | " + " | ".join(summary["by_transport"]) + " |"]
    lines += ["|---|" + "---|" * len(summary["by_transport"])]
    ratio_names: dict[str, str] = {}
    for variant in OURS:
        key = variant.replace("-", "_")
        ratio_names[f"{key}_vs_stock"] = f"{VARIANT_NAMES[variant]} / stock, max turns/s"
    for variant in OURS:
        key = variant.replace("-", "_")
        ratio_names[f"{key}_vs_ceiling"] = f"{VARIANT_NAMES[variant]} / ceiling, max turns/s"
    for variant in TELEMETRY_VARIANTS:
        key = variant.replace("-", "_")
        ratio_names[f"cpu_{key}_vs_off"] = (
            f"CPU per turn at {P99_CONNECTIONS} connections, {VARIANT_NAMES[variant]} / off"
        )
        ratio_names[f"throughput_off_vs_{key}"] = f"max turns/s, telemetry off / {VARIANT_NAMES[variant]}"
    for key, name in ratio_names.items():
        values = [_fmt(summary["by_transport"][t]["ratios"].get(key), 2) for t in summary["by_transport"]]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    lines += [
        "",
        "## All runs",
        "",
        "| target | transport | connections | paced at | turns/s | p50 ms | p95 ms | p99 ms | CPU ms/turn | "
        "peak RSS MB | failed | load gen cores | other cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        name = labels.get(run["target"], run["target"])
        if run["workers"] is not None:
            name += f", {run['workers']} worker(s)"
        latency = run["latency_ms"]
        lines.append(
            f"| {name} | {run['transport']} | {run['connections']} | {_fmt(run['rate'], 0) if run['rate'] else '-'} "
            f"| {_fmt(run['turns_per_second'])} | {_fmt(latency.get('p50'))} | {_fmt(latency.get('p95'))} "
            f"| {_fmt(latency.get('p99'))} | {_fmt(run['cpu_ms_per_turn'], 2)} | {_fmt(run['peak_rss_mb'])} "
            f"| {run['failed']} | {_fmt(run['load_generator_cpu'], 2)} | {_fmt(run['background_cpu'], 2)} |"
        )
    workers = summary["workers"]["turns_per_second"]
    if workers:
        lines += ["", f"## Worker processes ({labels.get('ours-workers', 'otel-chatbot')}, expectReplies)", ""]
        lines += ["| workers | turns/s |", "|---|---|"]
        lines += [f"| {count} | {_fmt(value)} |" for count, value in workers.items()]
        lines.append(f"\nScaling 1 → 2 workers: {_fmt(summary['workers']['scaling_1_to_2'], 2)}x")
    if data.get("checks"):
        lines += [
            "",
            "## Exactness (otel-chatbot, full telemetry)",
            "",
            "| run | requests completed | turns in Prometheus | Request envelopes | envelopes by type | "
            "role instances | problems |",
            "|---|---|---|---|---|---|---|",
        ]
        for check in data["checks"]:
            types = ", ".join(f"{kind} {count}" for kind, count in sorted(check["envelopes_by_type"].items()))
            lines.append(
                f"| {check['target']} | {check['requests_sent']} (+≤{check['in_flight_allowance']} in flight) "
                f"| {_fmt(check['prometheus_turns'], 0)} | {check['request_envelopes']} | {types} "
                f"| {len(check['role_instances'])} | {'; '.join(check['problems']) or 'none'} |"
            )
    if summary["notes"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"
