"""The channel for the `channel` transport: accepts the bot's replies at `{serviceUrl}/v3/conversations/...` and
counts them. `python -m loadtest.benchmark.receiver PORT` serves until SIGTERM; `GET /count` returns the counts.

It also accepts Application Insights uploads (`POST /v2.1/track`, the connection string's IngestionEndpoint being
this server) and counts their envelopes, for runs that want the ingestion endpoint out of their own process too.
It runs as a process of its own, beside the load generator, so its CPU is never charged to the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys

from aiohttp import web

from loadtest.rig.channel import route
from loadtest.rig.ingestion import TRACK_PATH, parse_envelopes, track_response
from loadtest.rig.serving import serve_until_stopped


class Receiver:
    def __init__(self) -> None:
        self.replies = 0
        self.envelopes = 0
        self.other = 0
        self._ids = itertools.count(1)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if request.method == "POST" and route(path) is not None:
            await request.read()
            self.replies += 1
            body = b'{"id": "reply-%d"}' % next(self._ids)  # a ResourceResponse, cheaper than a uuid
            return web.Response(body=body, content_type="application/json")
        if request.method == "POST" and TRACK_PATH.match(path):
            try:
                count = len(parse_envelopes(await request.read()))
            except (ValueError, UnicodeDecodeError, OSError, EOFError) as error:
                return track_response(0, status=400, message=f"unreadable payload: {error}")
            self.envelopes += count
            return track_response(count)
        if request.method == "GET" and request.path == "/count":
            return web.json_response({"replies": self.replies, "envelopes": self.envelopes, "other": self.other})
        self.other += 1
        return web.Response(status=404)


async def serve(host: str, port: int) -> None:
    receiver = Receiver()
    runner = web.ServerRunner(web.Server(receiver.handle, access_log=None), handle_signals=False)
    await serve_until_stopped(runner, host, port, f"receiver listening on http://{host}:{port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.benchmark.receiver")
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
