"""Telemetry of the conversation state store (bot/storage): implements `bot.storage.StorageObserver`.

- Each call of the blob store is a CLIENT span with the Azure SDK's `az.namespace` (`Microsoft.Storage`, which
  Application Insights shows as the dependency type) and the HTTP client attributes of the request it made
  (method, container URL, status code). Blob names are left out: they hold conversation and user ids.
- Every call of any store is timed (`bot.state.operation.duration` by store, operation and outcome); stale e-tags are
  counted (`bot.state.conflicts`), as are the turns the guard reran and the redeliveries it did not answer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from botbuilder.core import TurnContext
from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import SpanKind, Status, StatusCode

from bot.storage import OUTCOME_CONFLICT, OUTCOME_ERROR, OUTCOME_SUCCESS, STORE_BLOB, StorageCall, StoreTarget
from telemetry import catalog
from telemetry.instruments import _counter, _histogram


class StorageTelemetry:
    def __init__(self, tracer: trace.Tracer, meter: Meter) -> None:
        self._tracer = tracer
        self._duration = _histogram(meter, catalog.STATE_OPERATION_DURATION)
        self._conflicts = _counter(meter, catalog.STATE_CONFLICTS)
        self._reruns = _counter(meter, catalog.STATE_TURN_RERUNS)
        self._redeliveries = _counter(meter, catalog.STATE_REDELIVERIES)
        # Exposed at 0 from the start: an alert or a rate() on them works before the first conflict.
        self._conflicts.add(0)
        self._reruns.add(0)
        self._redeliveries.add(0)

    @contextlib.contextmanager
    def observe(self, call: StorageCall, target: StoreTarget) -> Iterator[None]:
        start = time.perf_counter()
        span: trace.Span | None = None
        if target.system == STORE_BLOB:
            span = self._tracer.start_span(
                catalog.STATE_SPANS.get(call.operation, call.operation),
                kind=SpanKind.CLIENT,
                attributes={
                    catalog.AZURE_NAMESPACE: catalog.AZURE_NAMESPACE_STORAGE,
                    catalog.STATE_STORE: target.system,
                    catalog.STATE_OPERATION: call.operation,
                    "http.request.method": call.method,
                    "url.full": target.url,
                    "server.address": target.server_address,
                    **({"server.port": target.server_port} if target.server_port else {}),
                },
            )
        try:
            # The status is set in _finish: a 404 or 412 passing through is an answer, not a failure.
            current = (
                trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)
                if span is not None
                else contextlib.nullcontext()
            )
            with current:
                yield
        except BaseException as error:
            if call.outcome == OUTCOME_SUCCESS:  # the store classifies what it expects (404, 412)
                call.outcome, call.error_type = OUTCOME_ERROR, call.error_type or type(error).__qualname__
            raise
        finally:
            self._finish(call, target, span, time.perf_counter() - start)

    def _finish(self, call: StorageCall, target: StoreTarget, span: trace.Span | None, elapsed: float) -> None:
        labels = {
            catalog.STATE_STORE: target.system,
            catalog.STATE_OPERATION: call.operation,
            catalog.STATE_OUTCOME: call.outcome,
        }
        self._duration.record(elapsed, labels)
        if call.outcome == OUTCOME_CONFLICT:
            self._conflicts.add(1)
        if span is None:
            return
        span.set_attribute(catalog.STATE_OUTCOME, call.outcome)
        if call.status_code is not None:
            span.set_attribute("http.response.status_code", call.status_code)
        # A 404 (an item never written) and a 412 (the guard reruns the turn) are answers, not failures.
        if call.outcome == OUTCOME_ERROR:
            span.set_attribute(catalog.ERROR_TYPE, call.error_type or "_OTHER")
            span.set_status(Status(StatusCode.ERROR, call.error_type))
        span.end()

    def rerun(self, context: TurnContext) -> None:
        self._reruns.add(1)

    def redelivery(self, context: TurnContext) -> None:
        self._redeliveries.add(1)
