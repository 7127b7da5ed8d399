"""The weekly report: traffic, errors, latency, answers, alerts and SLO attainment, read from Prometheus.

    python -m telemetry.weekly [--prometheus URL] [--start ISO | --days 7] [--end ISO] [--step auto]
                               [--out DIR] [--slo-p95 2.0] [--slo-error-ratio 0.01]

Writes report.md, report.html (next to its PNG charts) and report.json (every series the charts were drawn from)
into --out. Exit codes: 0 written, 1 Prometheus refused a query, 2 Prometheus unreachable or bad arguments.
The charts need matplotlib: install the `report` extra (`pip install -e ".[report]"`).

One module per step, in the order they run:
    queries      every PromQL query, by key (Kind: range, instant, raw samples)
    client       the Prometheus HTTP API
    windows      the time range, the step and the rate window
    collect      every query over the range: Results
    analysis     alert episodes and MTTR, SLO attainment, failed authentication by reason
    text         how numbers are written
    charts       PNG charts (matplotlib)
    sections     what the report says, section by section
    render_markdown, render_html
    write        report.md, report.html, report.json and the charts into a directory
    cli          arguments, exit codes (`python -m telemetry.weekly` runs cli.main)
"""
