"""What the report says, section by section (titles, paragraphs, tables, images), for either renderer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from telemetry.weekly.analysis import AlertEpisodes, SloSummary, auth_failures, overall_mttr
from telemetry.weekly.collect import Results
from telemetry.weekly.queries import MESSAGES_ROUTE, QUERIES
from telemetry.weekly.text import duration, estimate, met, number, percent, quantile_estimate, range_stats, utc


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    image: str | None = None
    code: bool = False  # table cells are code (queries)


@dataclass(frozen=True)
class Kpi:
    """One of the seed's key figures against its objective."""

    name: str
    value: float | None
    shown: str
    objective: str
    met: str


def kpis(
    results: Results, alerts: Sequence[AlertEpisodes], slo_p95: float, slo_error_ratio: float, slo_availability: float
) -> list[Kpi]:
    uptime = results.scalar("availability")
    total, failed = results.scalar("total_turns"), results.scalar("failed_turns")
    error_rate = (failed or 0.0) / total if total else None
    p95 = results.scalar("latency_p95_range")
    mttr, resolved = overall_mttr(alerts)
    return [
        Kpi(
            "Uptime (successful scrapes)",
            uptime,
            percent(uptime, 3),
            f"≥ {percent(slo_availability, 1)}",
            met(uptime, uptime is not None and uptime >= slo_availability),
        ),
        Kpi(
            "Error rate (failed turns / turns)",
            error_rate,
            percent(error_rate),
            f"< {percent(slo_error_ratio, 2)}",
            met(error_rate, error_rate is not None and error_rate < slo_error_ratio),
        ),
        Kpi(
            f"p95 response time of {MESSAGES_ROUTE}",
            p95,
            quantile_estimate(p95),
            f"< {slo_p95:g} s",
            met(p95, p95 is not None and p95 < slo_p95),
        ),
        Kpi(
            "MTTR (alert firing → resolved)",
            mttr,
            "no alert resolved" if mttr is None else f"{duration(mttr)} over {resolved} resolved episodes",
            "as short as possible",
            "",
        ),
    ]


def security_lines(results: Results) -> list[str]:
    total, by_reason = auth_failures(results)
    if total is None or round(total) == 0:
        return ["No request failed authentication in this range."]
    reasons = ", ".join(f"{reason} {estimate(count)}" for reason, count in by_reason if round(count) > 0)
    return [
        f"Requests that failed authentication (401): {estimate(total)} (estimated); by reason: {reasons}.",
        "A real channel's tokens do not fail: see the runbook ChatbotAuthFailureSurge for what each reason means.",
    ]


def _by(results: Results, key: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(item.labels.get(label, "") for label in labels): item.points[-1][1]
        for item in results.series.get(key, [])
        if item.points
    }


def genai_lines(results: Results) -> list[str]:
    """The language model's calls, failures, tokens and the ratings by answer source (docs/genai.md)."""
    calls = _by(results, "genai_calls_by_model", "gen_ai_request_model")
    if not calls or round(sum(calls.values())) == 0:
        return ["No language model answered in this range (none configured, or no question needed it)."]
    failed = _by(results, "genai_failed_by_model", "gen_ai_request_model")
    tokens = _by(results, "genai_tokens_by_model", "gen_ai_request_model", "gen_ai_token_type")
    lines = []
    for (model,), count in sorted(calls.items(), key=lambda item: -item[1]):
        share = failed.get((model,), 0.0) / count if count else None
        used_in, used_out = tokens.get((model, "input"), 0.0), tokens.get((model, "output"), 0.0)
        lines.append(
            f"{model}: {estimate(count)} calls, {percent(share, 1)} failed; tokens {estimate(used_in)} in, "
            f"{estimate(used_out)} out (estimated)."
        )
    ratings = _by(results, "ratings_by_source", "bot_answer_source")
    if ratings:
        shown = ", ".join(f"{source or 'no answer'} {value:.2f}" for (source,), value in sorted(ratings.items()))
        lines.append(f"Average rating (1-5) by the source of the answer rated: {shown}.")
    return lines


def build_sections(
    results: Results,
    slo: SloSummary,
    alerts: list[AlertEpisodes],
    charts: dict[str, list[str]],
    slo_p95: float,
    slo_error_ratio: float,
    key_figures: Sequence[Kpi] = (),
) -> list[Section]:
    window = results.window
    figures = Section(
        "Key figures against objectives",
        [
            "Over the whole range. Counts from `increase()` are estimates (marked ≈: Prometheus extrapolates to the "
            "edges of the range), and percentiles are estimated from histogram buckets."
        ],
        table=(
            ["Measure", "Value", "Objective", "Result"],
            [[kpi.name, kpi.shown, kpi.objective, kpi.met] for kpi in key_figures],
        ),
    )
    failed_share = (
        slo.failed_turns / slo.total_turns
        if slo.total_turns and slo.failed_turns is not None and slo.total_turns > 0
        else None
    )
    summary = Section(
        "SLO attainment",
        [
            f"Objectives: p95 response time of `{MESSAGES_ROUTE}` below {slo_p95:g} s and turn error ratio below "
            f"{percent(slo_error_ratio, 2)}, checked at each of the {slo.steps} evaluation steps that had traffic "
            f"(step {window.step:g} s, rates over {window.rate_window} s)."
        ],
        table=(
            ["Measure", "Value"],
            [
                ["Steps meeting both objectives", percent(slo.share(slo.both_good))],
                [f"Steps with p95 < {slo_p95:g} s", percent(slo.share(slo.latency_good))],
                [f"Steps with error ratio < {percent(slo_error_ratio, 2)}", percent(slo.share(slo.errors_good))],
                ["Turns (estimated)", estimate(slo.total_turns)],
                ["Failed turns (estimated)", f"{estimate(slo.failed_turns)} ({percent(failed_share)})"],
                ["Availability (successful scrapes of the bot)", percent(slo.availability, 3)],
                ["Instances seen", number(results.scalar("instances"))],
                ["Alerts fired", str(len(alerts))],
            ],
        ),
    )
    sections = [figures, summary] if key_figures else [summary]

    def chart_section(title: str, file: str, lines: list[str]) -> None:
        section = Section(title, lines)
        if charts.get(file):
            section.image = file
        else:
            section.paragraphs.append("No data in this range.")
        sections.append(section)

    chart_section(
        "Traffic",
        "traffic.png",
        [
            f"Turns per second: {range_stats(results.points('turns_per_second'))}.",
            f"Requests per second: {range_stats(results.points('requests_per_second'))}.",
            f"Requests in the range: {estimate(results.scalar('total_requests'))} (estimated).",
        ],
    )
    chart_section(
        "Error ratio",
        "errors.png",
        [
            f"Failed turns: {range_stats(results.points('turn_error_ratio'), 100, ' %', 2)}.",
            f"HTTP 5xx: {range_stats(results.points('http_5xx_ratio'), 100, ' %', 2)}.",
        ],
    )
    chart_section(
        "Latency",
        "latency.png",
        [
            "Percentiles are estimated from the histogram's buckets (linear inside a bucket).",
            *(f"p{q}: {range_stats(results.points(f'latency_p{q}'), 1, ' s')}." for q in ("50", "95", "99")),
            f"p95 over the whole range: {quantile_estimate(results.scalar('latency_p95_range'))}.",
        ],
    )
    chart_section(
        "Answers and fallbacks",
        "knowledge.png",
        [
            f"Knowledge answers: {estimate(results.scalar('total_answers'))}; "
            f"fallbacks: {estimate(results.scalar('total_fallbacks'))} (estimated).",
            f"Fallback ratio: {range_stats(results.points('fallback_ratio'), 100, ' %', 1)}.",
        ],
    )
    sections.append(Section("Language model", genai_lines(results)))
    sections.append(Section("Security", security_lines(results)))
    alert_section = Section("Alerts fired")
    if alerts:
        alert_section.image = "alerts.png" if charts.get("alerts.png") else None
        alert_section.paragraphs.append(
            "From Prometheus' own alert state: every rule evaluation that found the alert firing "
            "(`ALERTS`), episodes told apart by `ALERTS_FOR_STATE`. An episode resolves at the first evaluation "
            "that no longer finds it firing; MTTR is the mean firing time of the resolved episodes."
        )
        alert_section.table = (
            ["Alert", "Severity", "Instance", "Times fired", "First fired (UTC)", "Firing in total", "MTTR", "Open"],
            [
                [
                    alert.alertname,
                    alert.labels.get("severity", ""),
                    alert.labels.get("instance", alert.labels.get("otel_component_name", "")),
                    str(len(alert.episodes)),
                    utc(alert.episodes[0].since),
                    duration(alert.firing_seconds),
                    "not resolved" if alert.mttr_seconds is None else duration(alert.mttr_seconds),
                    "still firing" if not alert.episodes[-1].resolved else "",
                ]
                for alert in alerts
            ],
        )
    else:
        alert_section.paragraphs.append("No alert fired in this range.")
    sections.append(alert_section)
    sections.append(
        Section(
            "Queries",
            ["Every number above comes from these PromQL queries (`$window` and `$range` filled in)."],
            table=(["Key", "PromQL"], [[query.key, window.substitute(query.expr)] for query in QUERIES]),
            code=True,
        )
    )
    return sections
