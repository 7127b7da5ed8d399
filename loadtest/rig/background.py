"""An aiohttp low-level server on 127.0.0.1 in a thread and event loop of its own: the base of the stand-ins."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self

from aiohttp import web

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
