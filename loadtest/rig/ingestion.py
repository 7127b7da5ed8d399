"""A local stand-in for the Application Insights ingestion endpoint (`POST /v2.1/track`), keeping every envelope (the
tests) or only what a long run needs (the load test's ledger, the benchmark's counts)."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from loadtest.rig.background import BackgroundServer
from loadtest.rig.polling import wait_until, wait_until_async
from telemetry import catalog

Envelope = dict[str, Any]
T = TypeVar("T")

INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"
# The exporter joins "{endpoint}/{apiVersion}/track" without normalising slashes.
TRACK_PATH = re.compile(r"^/+v2(\.1)?/track$")
_GZIP_MAGIC = b"\x1f\x8b"
# Keeps the Azure Monitor SDK from phoning home (statsbeat, sdkstats, OneSettings) and from routing loopback traffic
# through a proxy configured in the environment: set it in any process whose exporters talk to a stand-in.
AZURE_SDK_OFFLINE_ENV = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def connection_string(base_url: str) -> str:
    """An Application Insights connection string whose ingestion (and live metrics) endpoint is `base_url`."""
    endpoint = f"{base_url.rstrip('/')}/"
    return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"


def export_settings(connection: str, storage: Path | str) -> dict[str, str]:
    """The bot's settings that send its Application Insights telemetry to `connection`, keeping what waits to be
    resent in `storage`: pass a fresh directory, so that telemetry an earlier run left unsent is not counted."""
    return {"APPLICATIONINSIGHTS_CONNECTION_STRING": connection, "BOT_TELEMETRY_STORAGE_DIRECTORY": str(storage)}


@dataclass(frozen=True)
class OtherRequest:
    """A request that was not a telemetry upload (wrong path or method)."""

    method: str
    path: str
    body: bytes


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: float | None


def parse_envelopes(body: bytes) -> list[Envelope]:
    """Decode a track payload: a JSON array, a single object, or newline-delimited objects; maybe gzipped."""
    if body.startswith(_GZIP_MAGIC):
        body = gzip.decompress(body)
    text = body.decode("utf-8").strip()
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    items = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError("every envelope must be a JSON object")
    return items


def envelope_base_type(envelope: Envelope) -> str | None:
    data = envelope.get("data")
    return data.get("baseType") if isinstance(data, dict) else None


class IngestionStandIn(BackgroundServer):
    """Records envelopes posted by the Azure Monitor exporters; can simulate an ingestion outage.

    `keep` receives every accepted batch instead of the list `envelopes` (called with the stand-in's lock held): a
    long run keeps a ledger or counts, not millions of envelopes."""

    def __init__(self, keep: Callable[[list[Envelope]], None] | None = None) -> None:
        super().__init__("ingestion-stand-in")
        self._keep = keep
        self._lock = threading.Lock()
        self._envelopes: list[Envelope] = []
        self._other: list[OtherRequest] = []
        self._requests_seen = 0
        self._fault: _Fault | None = None
        self._open = asyncio.Event()  # cleared by hold(): uploads wait unanswered, like a hanging endpoint
        self._open.set()

    @property
    def connection_string(self) -> str:
        return connection_string(self.base_url)

    def export_settings(self, storage: Path | str) -> dict[str, str]:
        """The bot's settings that export to this stand-in (see `export_settings`)."""
        return export_settings(self.connection_string, storage)

    @property
    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._envelopes)

    @property
    def requests_seen(self) -> int:
        """Number of POSTs to the track path, including those answered with a simulated fault."""
        with self._lock:
            return self._requests_seen

    @property
    def other_requests(self) -> list[OtherRequest]:
        with self._lock:
            return list(self._other)

    def of_type(self, base_type: str) -> list[Envelope]:
        """Envelopes whose `data.baseType` is e.g. "RequestData", "RemoteDependencyData", "MetricData"."""
        return [envelope for envelope in self.envelopes if envelope_base_type(envelope) == base_type]

    def clear(self) -> None:
        with self._lock:
            self._envelopes.clear()
            self._other.clear()
            self._requests_seen = 0

    def fail_with(self, status: int, retry_after: float | None = None) -> None:
        """Answer every following upload with `status` (and `Retry-After`), recording nothing."""
        with self._lock:
            self._fault = _Fault(status, retry_after)

    def recover(self) -> None:
        with self._lock:
            self._fault = None

    def hold(self) -> None:
        """Leave every following upload unanswered until `release()`: an endpoint that hangs."""

        async def close() -> None:
            self._open.clear()

        self.call_in_loop(close)

    def release(self) -> None:
        """Answer the held uploads (and every later one) as usual."""

        async def reopen() -> None:
            self._open.set()

        self.call_in_loop(reopen)

    async def before_shutdown(self) -> None:
        self._open.set()

    def wait_for(
        self, predicate: Callable[[list[Envelope]], T | None], timeout: float = 10.0, message: str = "envelopes"
    ) -> T:
        """Poll until `predicate(envelopes)` is truthy and return that value (e.g. the matching envelopes).

        Blocks the calling thread: from async tests use `wait_for_async` so the loop keeps running.
        """
        return wait_until(lambda: predicate(self.envelopes), timeout=timeout, message=message)

    async def wait_for_async(
        self,
        predicate: Callable[[list[Envelope]], T | None],
        timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
        message: str = "envelopes",
    ) -> T:
        return await wait_until_async(lambda: predicate(self.envelopes), timeout=timeout, message=message)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # The server decompresses `Content-Encoding: gzip` itself; parse_envelopes covers raw gzip bodies too.
        body = await request.content.read()
        path = request.rel_url.raw_path
        if request.method != "POST" or not TRACK_PATH.match(path):
            with self._lock:
                self._other.append(OtherRequest(request.method, path, body))
            return web.json_response({"error": f"no route for {request.method} {path}"}, status=404)
        with self._lock:
            self._requests_seen += 1
        await self._open.wait()
        with self._lock:
            fault = self._fault
        try:
            envelopes = parse_envelopes(body)
        except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:
            return track_response(0, status=400, message=f"unreadable payload: {exc}")
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": _format_seconds(fault.retry_after)}
            return track_response(len(envelopes), status=fault.status, message="simulated outage", headers=headers)
        with self._lock:
            self.store(envelopes)
        return track_response(len(envelopes))

    def store(self, envelopes: list[Envelope]) -> None:
        """Keep accepted envelopes, in `envelopes` or through `keep` (call with the lock held)."""
        if self._keep is None:
            self._envelopes.extend(envelopes)
        else:
            self._keep(envelopes)


def _format_seconds(seconds: float) -> str:
    # The exporter only honours an all-digits Retry-After, so keep whole seconds integral.
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def track_response(
    received: int, status: int = 200, message: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    """What the endpoint answers a track upload of `received` envelopes: all accepted (200) or all failed with
    `status` (https://learn.microsoft.com/azure/azure-monitor/app/api-custom-events-metrics#response)."""
    if status == 200:
        errors: list[dict[str, Any]] = []
    else:
        errors = [{"index": i, "statusCode": status, "message": message} for i in range(received)]
    accepted = received if status == 200 else 0
    payload = {"itemsReceived": received, "itemsAccepted": accepted, "errors": errors}
    return web.json_response(payload, status=status, headers=headers)


@dataclass
class EnvelopeCounts:
    """Counts of accepted envelopes, for `IngestionStandIn(keep=counts.add)`: by `data.baseType`, the Request
    envelopes of turns (`POST /api/messages`), and the role instances (one per bot process) that sent them."""

    by_type: dict[str, int] = field(default_factory=dict)
    turn_requests: int = 0
    role_instances: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, envelopes: list[Envelope]) -> None:
        with self._lock:
            for envelope in envelopes:
                kind = envelope_base_type(envelope) or "unknown"
                self.by_type[kind] = self.by_type.get(kind, 0) + 1
                if kind == "RequestData":
                    base = envelope.get("data", {}).get("baseData", {})
                    if base.get("name") == catalog.SPAN_MESSAGES_REQUEST:
                        self.turn_requests += 1
                instance = (envelope.get("tags") or {}).get("ai.cloud.roleInstance")
                if instance and len(self.role_instances) < 64:  # bounded: a bug must not grow it without end
                    self.role_instances.add(str(instance))

    def snapshot(self) -> tuple[dict[str, int], int, list[str]]:
        """(counts by type, turn Request envelopes, role instances), consistent with each other."""
        with self._lock:
            return dict(self.by_type), self.turn_requests, sorted(self.role_instances)
