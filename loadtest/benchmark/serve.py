"""Runs one benchmark target in this process until SIGTERM/SIGINT: `python -m loadtest.benchmark.serve TARGET PORT`.

Targets: `bare` (loadtest/benchmark/bare.py), `stock` (loadtest/benchmark/stock.py) and `ours-off`, otel-chatbot's
own application with no telemetry at all (no providers, no middleware, no exporters). `ours-on` is not served from
here: the harness runs the bot itself (`python -m bot`), as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from loadtest.rig.serving import serve_until_stopped

SERVED = ("bare", "stock", "ours-off")


def build(target: str) -> web.Application:
    if target == "bare":
        from loadtest.benchmark import bare

        return bare.create_app()
    if target == "stock":
        from loadtest.benchmark import stock

        return stock.create_app()
    from bot.app import create_app
    from bot.settings import Settings

    return create_app(Settings.from_env())


async def serve(target: str, host: str, port: int) -> None:
    runner = web.AppRunner(build(target), handle_signals=False, access_log=None)
    banner = f"{target} listening on http://{host}:{port}/api/messages"
    await serve_until_stopped(runner, host, port, banner, reuse_port=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.benchmark.serve")
    parser.add_argument("target", choices=SERVED)
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.target, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
