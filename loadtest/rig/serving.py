"""An aiohttp runner served in the foreground until SIGTERM or SIGINT: how the benchmark's child processes (the
targets, the reply receiver) run, so that their parent stops them as a process manager would."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


async def serve_until_stopped(
    runner: web.BaseRunner, host: str, port: int, banner: str, reuse_port: bool = False
) -> None:
    """Serve `runner` on host:port, print `banner` once listening, and return after SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        print(banner, flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
