"""Series of a Prometheus exposition text (what the bot's /metrics serves), found by the catalog's names.

Pass a `telemetry.catalog.Metric` rather than a string wherever the series is one of the bot's: its Prometheus name
is then derived the way the exporter derives it, so a renamed metric cannot leave a silent zero behind."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from telemetry.catalog import Metric

Labels = dict[str, str]


def series_name(metric: Metric | str) -> str:
    return metric.prometheus_name if isinstance(metric, Metric) else metric


def samples(exposition: str, metric: Metric | str) -> list[tuple[Labels, float]]:
    """Every sample of the series (e.g. `catalog.TURNS`: `bot_turns_total`), as (labels, value), in text order."""
    name = series_name(metric)
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    ]


def total(exposition: str, metric: Metric | str, **labels: str) -> float:
    """The sum of the series over every label set that has all of `labels`."""
    return sum(
        value
        for sample_labels, value in samples(exposition, metric)
        if all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    )


def total_by(exposition: str, metric: Metric | str, label: str) -> dict[str, float]:
    """The sum of the series per value of one label (`-` where a sample lacks it)."""
    sums: dict[str, float] = {}
    for sample_labels, value in samples(exposition, metric):
        key = sample_labels.get(label, "-")
        sums[key] = sums.get(key, 0.0) + value
    return sums


def duplicate_series(exposition: str) -> list[str]:
    """Series that appear more than once with the same labels (a merge that adds instead of replacing)."""
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    found = []
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in seen:
                found.append(f"{sample.name} {dict(sample.labels)}")
            seen.add(key)
    return found
