"""A local stand-in for the Application Insights ingestion endpoint (`POST /v2.1/track`)."""

import gzip
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from tests.support import BackgroundServer
from tests.support.polling import wait_until, wait_until_async

Envelope = dict[str, Any]
T = TypeVar("T")

INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"
# The exporter joins "{endpoint}/{apiVersion}/track" without normalising slashes.
TRACK_PATH = re.compile(r"^/+v2(\.1)?/track$")
_GZIP_MAGIC = b"\x1f\x8b"


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
    """Records envelopes posted by the Azure Monitor exporters; can simulate an ingestion outage."""

    def __init__(self) -> None:
        super().__init__("ingestion-stand-in")
        self._lock = threading.Lock()
        self._envelopes: list[Envelope] = []
        self._other: list[OtherRequest] = []
        self._requests_seen = 0
        self._fault: _Fault | None = None

    @property
    def connection_string(self) -> str:
        endpoint = f"{self.base_url}/"
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"

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
            fault = self._fault
        try:
            envelopes = parse_envelopes(body)
        except (ValueError, UnicodeDecodeError, OSError, EOFError) as exc:
            return _track_response(0, status=400, message=f"unreadable payload: {exc}")
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": _format_seconds(fault.retry_after)}
            return _track_response(len(envelopes), status=fault.status, message="simulated outage", headers=headers)
        with self._lock:
            self._envelopes.extend(envelopes)
        return _track_response(len(envelopes))


def _format_seconds(seconds: float) -> str:
    # The exporter only honours an all-digits Retry-After, so keep whole seconds integral.
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _track_response(
    received: int, status: int = 200, message: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    if status == 200:
        errors: list[dict[str, Any]] = []
    else:
        errors = [{"index": i, "statusCode": status, "message": message} for i in range(received)]
    accepted = received if status == 200 else 0
    payload = {"itemsReceived": received, "itemsAccepted": accepted, "errors": errors}
    return web.json_response(payload, status=status, headers=headers)
