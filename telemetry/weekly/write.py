"""Writing the report: charts, report.md, report.html and report.json (every series the charts were drawn from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from telemetry.weekly.analysis import DEFAULT_SLO_AVAILABILITY, alert_episodes, auth_failures, overall_mttr, slo_summary
from telemetry.weekly.charts import chart_specs, draw_alerts, draw_chart
from telemetry.weekly.collect import Results
from telemetry.weekly.queries import QUERIES
from telemetry.weekly.render_html import render_html
from telemetry.weekly.render_markdown import render_markdown
from telemetry.weekly.sections import build_sections, kpis


def write_report(
    results: Results,
    out: Path,
    slo_p95: float,
    slo_error_ratio: float,
    slo_availability: float = DEFAULT_SLO_AVAILABILITY,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    window = results.window
    charts: dict[str, list[str]] = {}
    for chart in chart_specs(slo_p95, slo_error_ratio):
        plotted = draw_chart(chart, results, out)
        if plotted:
            charts[chart.file] = plotted
    alerts = alert_episodes(
        results.series.get("alerts_firing", []), results.series.get("alerts_for_state", []), window.end.timestamp()
    )
    if draw_alerts(alerts, window, out):
        charts["alerts.png"] = ["alerts_firing"]
    slo = slo_summary(results, slo_p95, slo_error_ratio)

    title = "Chatbot weekly report"
    subtitle = (
        f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC, from Prometheus at `{results.prometheus}`."
    )
    key_figures = kpis(results, alerts, slo_p95, slo_error_ratio, slo_availability)
    if window.note:
        subtitle += f" Note: {window.note}."
    sections = build_sections(results, slo, alerts, charts, slo_p95, slo_error_ratio, key_figures)
    (out / "report.md").write_text(render_markdown(title, subtitle, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, subtitle, sections), encoding="utf-8")

    summary: dict[str, Any] = {
        "prometheus": results.prometheus,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "step_seconds": window.step,
        "rate_window_seconds": window.rate_window,
        "slo": {
            "p95_seconds": slo_p95,
            "error_ratio": slo_error_ratio,
            "steps_with_traffic": slo.steps,
            "steps_meeting_both": slo.both_good,
            "attainment": slo.share(slo.both_good),
            "total_turns": slo.total_turns,
            "failed_turns": slo.failed_turns,
            "availability": slo.availability,
        },
        "charts": charts,
        "kpis": {
            kpi.name: {"value": kpi.value, "shown": kpi.shown, "objective": kpi.objective, "result": kpi.met}
            for kpi in key_figures
        },
        "mttr_seconds": overall_mttr(alerts)[0],
        "auth_failures": dict(auth_failures(results)[1]),
        "alerts": [
            {
                "alertname": alert.alertname,
                "labels": alert.labels,
                "mttr_seconds": alert.mttr_seconds,
                "episodes": [
                    {"since": episode.since, "until": episode.until, "resolved": episode.resolved}
                    for episode in alert.episodes
                ],
            }
            for alert in alerts
        ],
        "queries": {query.key: window.substitute(query.expr) for query in QUERIES},
        "series": {
            key: [{"labels": item.labels, "points": item.points} for item in found]
            for key, found in results.series.items()
        },
    }
    (out / "report.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
