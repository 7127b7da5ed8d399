"""Telemetry stored during an Application Insights outage is resent on a schedule of its own.

The Azure Monitor exporters write a batch that fails with a retryable answer (5xx, 429, connection refused) to their
storage directory, and resend stored batches only after a later export of the same exporter succeeds. A bot with no
traffic after the outage makes no such export (nor does the metric exporter for up to a minute), so its outage stays
on disk until the next user comes. `OfflineRetry` drains each exporter's storage every
`BOT_TELEMETRY_RETRY_INTERVAL_SECONDS` from a thread of its own.

No batch is sent twice: a batch is taken the way the exporters take them, by leasing its file (an atomic rename that
only one taker wins) for longer than one upload may last, and deleted once ingestion accepted it; the exporters' own
draining after a success leases the same way, so the two never send one file both. A batch ingestion refuses again is
left for a later round; a batch it rejects for good (400) is deleted, as the exporters do.

It uses the exporters' own transmission (`_transmit`: Entra credentials, redirects, the rejected part of a 206
stored again) and these private names of azure-monitor-opentelemetry-exporter: `BaseExporter._transmit`,
`BaseExporter._timeout`, `BaseExporter.storage` (a `LocalFileStorage`: `gets()`, and `lease()`, `get()`,
`delete()` of its blobs), `azure.monitor.opentelemetry.exporter.export._base.ExportResult` and
`azure.monitor.opentelemetry.exporter._generated.exporter.models.TelemetryItem`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

# How long a taken batch stays leased beyond the upload's own timeout (the exporters allow 5 s as well).
LEASE_MARGIN_SECONDS = 5
# Most batches one exporter sends per round; the next round goes on (a backlog drains at this rate per interval).
MAX_BATCHES_PER_ROUND = 100


class OfflineRetry:
    """Every `interval` seconds, resends what each exporter stored, until `stop()`."""

    def __init__(self, exporters: Iterable[Any], interval: float) -> None:
        self._exporters = [exporter for exporter in exporters if getattr(exporter, "storage", None) is not None]
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="OtelChatbotOfflineRetry", daemon=True)

    def start(self) -> OfflineRetry:
        if self._exporters:
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop between two batches (an upload in progress ends first, within the exporter's timeout)."""
        self._stopped.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            for exporter in self._exporters:
                try:
                    self.drain(exporter)
                except Exception:  # a broken round must not end the schedule
                    log.warning("resending stored telemetry failed", exc_info=True)

    def drain(self, exporter: Any) -> int:
        """Resend the exporter's stored batches whose lease has run out; returns how many ingestion accepted."""
        from azure.monitor.opentelemetry.exporter._generated.exporter.models import TelemetryItem
        from azure.monitor.opentelemetry.exporter.export._base import ExportResult

        storage = exporter.storage
        if storage is None:
            return 0
        lease = int(exporter._timeout) + LEASE_MARGIN_SECONDS
        sent = 0
        for taken, blob in enumerate(storage.gets()):
            if self._stopped.is_set() or taken >= MAX_BATCHES_PER_ROUND:
                break
            if not blob.lease(lease):
                continue  # taken meanwhile by the exporter's own draining
            data = blob.get()
            if data is None:
                blob.delete()  # unreadable: the exporters delete such files too
                continue
            result = exporter._transmit([TelemetryItem(item) for item in data])
            if result == ExportResult.FAILED_RETRYABLE:
                blob.lease(1)  # free for the next round (or the exporter's next success); ingestion is still down
                break
            blob.delete()  # accepted, or refused for good (as the exporters do)
            if result == ExportResult.SUCCESS:
                sent += 1
        return sent


__all__ = ["LEASE_MARGIN_SECONDS", "MAX_BATCHES_PER_ROUND", "OfflineRetry"]
