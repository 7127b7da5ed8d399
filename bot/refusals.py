"""A WARNING line on the console for every refused request, rate-limited per reason.

The refusal is counted by telemetry (`bot.requests.rejected`) whatever happens here; the console line tells whoever
runs the bot why a client got nothing back. A flood of one kind of refusal (a misconfigured client retrying, a scan)
gives one line per reason per interval, and the next line says how many were left out in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.hooks import REJECTION

log = logging.getLogger("bot.refusals")

INTERVAL_SECONDS = 10.0
# The message of a refusal's JSON body, kept beside the reason so the console line can repeat it.
REFUSAL_MESSAGE = web.ResponseKey("bot.refusal.message", str)


class RefusalLog:
    """Logs the first refusal of each reason, then at most one line per reason every `interval` seconds."""

    def __init__(
        self,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._logger = logger
        self._lock = threading.Lock()
        self._last_line: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def refused(self, reason: str, status: int, message: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last_line.get(reason)
            if last is not None and now - last < self._interval:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return
            self._last_line[reason] = now
            suppressed = self._suppressed.pop(reason, 0)
        since = f" ({suppressed} more refused for this reason since the last line)" if suppressed else ""
        self._logger.warning("refused a request with %d %s: %s%s", status, reason, message, since)


REFUSAL_LOG = web.AppKey("refusal_log", RefusalLog)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def log_refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    reason = response.get(REJECTION)
    if reason is not None:
        request.app[REFUSAL_LOG].refused(reason, response.status, response.get(REFUSAL_MESSAGE, ""))
    return response
