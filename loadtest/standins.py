"""Local stand-ins for services the bot talks to: the Application Insights ingestion endpoint (`POST /v2.1/track`)
and the background-server base it runs on. The load test uses them to reconcile offline; the tests re-export them."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from loadtest.polling import wait_until, wait_until_async

__all__ = [
    "INSTRUMENTATION_KEY",
    "TRACK_PATH",
    "BackgroundServer",
    "Envelope",
    "IngestionStandIn",
    "OtherRequest",
    "envelope_base_type",
    "parse_envelopes",
]

_SHUTDOWN_GRACE = 2.0


class BackgroundServer:
    """An aiohttp low-level server on 127.0.0.1 running in its own thread and event loop.

    Being off the test's event loop means synchronous callers (exporters flushing from worker threads,
    or from the test's own loop) can talk to it without deadlocking.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: int | None = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raise NotImplementedError

    async def before_shutdown(self) -> None:
        """Runs on the server loop before connections are closed; release anything held open here."""

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self._name} is not running")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def call_in_loop(self, callback: Callable[[], Coroutine[Any, Any, None]], timeout: float = 10.0) -> None:
        """Run a coroutine on the server's loop and wait for it (from any other thread)."""
        if self._loop is None:
            raise RuntimeError(f"{self._name} is not running")
        asyncio.run_coroutine_threadsafe(callback(), self._loop).result(timeout)

    def start(self, timeout: float = 10.0, port: int = 0) -> Self:
        """Listen on `port` (0: any free port; a stopped server comes back on its old port with `port=...`)."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        loop = asyncio.new_event_loop()
        started: Future[None] = Future()
        thread = threading.Thread(target=self._serve, args=(loop, sock, started), name=self._name, daemon=True)
        thread.start()
        try:
            started.result(timeout)
        except BaseException:
            with contextlib.suppress(RuntimeError):  # the loop is already closed if setup failed
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._loop = loop
        self._thread = thread
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"{self._name} did not stop within {timeout:g}s")
        self._thread = self._loop = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, started: Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(self._setup(sock))
        except BaseException as exc:
            sock.close()
            loop.close()
            started.set_exception(exc)
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.before_shutdown())
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self, sock: socket.socket) -> web.ServerRunner:
        # Held requests are released by before_shutdown(); the grace period is only a backstop.
        server = web.Server(self.handle, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner


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
        self._open = asyncio.Event()  # cleared by hold(): uploads wait unanswered, like a hanging endpoint
        self._open.set()

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
            return _track_response(0, status=400, message=f"unreadable payload: {exc}")
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": _format_seconds(fault.retry_after)}
            return _track_response(len(envelopes), status=fault.status, message="simulated outage", headers=headers)
        with self._lock:
            self.store(envelopes)
        return _track_response(len(envelopes))

    def store(self, envelopes: list[Envelope]) -> None:
        """Keep accepted envelopes (called with the lock held); a long run can keep a digest instead."""
        self._envelopes.extend(envelopes)


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
