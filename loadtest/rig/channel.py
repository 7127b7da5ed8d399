"""The channel connector the bot replies to (what the Emulator serves on `serviceUrl`): its routes and answers,
written once for the three that serve them: `ChannelStandIn` here for the tests (records every request, fails or hangs
a conversation on demand), the benchmark's receiver (loadtest/benchmark/receiver.py: counts, in a process of its own)
and the load test's reply board (loadtest/receiver.py: matches replies to turns, a WSGI app in Locust's gevent
process).

The routes are the Bot Framework Connector API's: POST to `/v3/conversations/{conversationId}/activities` (send) and
`/v3/conversations/{conversationId}/activities/{activityId}` (reply to), PUT and DELETE on an activity; answered
with a `ResourceResponse` (`{"id": ...}`) or an `ErrorResponse` (`{"error": {"code", "message"}}`),
https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-api-reference
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from loadtest.rig.activities import Activity
from loadtest.rig.background import BackgroundServer
from loadtest.rig.polling import wait_until, wait_until_async

_ACTIVITIES_PATH = re.compile(r"^/v3/conversations/(?P<conversation>[^/]+)/activities(?:/(?P<activity>[^/]+))?/?$")


@dataclasses.dataclass(frozen=True)
class Route:
    """Which conversation (and activity) a connector request is about, its ids unquoted."""

    conversation_id: str
    activity_id: str | None


def route(path: str) -> Route | None:
    """The connector route of a raw request path, or None when it is none of them."""
    found = _ACTIVITIES_PATH.match(path)
    if found is None:
        return None
    activity = found.group("activity")
    return Route(unquote(found.group("conversation")), unquote(activity) if activity else None)


def resource_response() -> dict[str, str]:
    """The body of an accepted activity: a fresh id."""
    return {"id": uuid.uuid4().hex}


def error_response(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@dataclasses.dataclass(frozen=True)
class ChannelRequest:
    """One answered request to `/v3/conversations/{conversation_id}/activities[/{activity_id}]`."""

    method: str
    path: str
    conversation_id: str
    activity_id: str | None
    activity: Activity | None
    authorization: str | None
    status: int


@dataclasses.dataclass(frozen=True)
class Answer:
    """A scripted answer to one request: a status with headers, or (`reset`) the connection closed unanswered."""

    status: int = 200
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    reset: bool = False


RESET = Answer(status=0, reset=True)


@dataclasses.dataclass(frozen=True)
class _Held:
    request: ChannelRequest
    # Resolves True to answer normally (recover) or False to abort (stop).
    outcome: asyncio.Future[bool]


class ChannelStandIn(BackgroundServer):
    """Accepts the bot's outgoing activities per conversation; can fail or hang a conversation."""

    def __init__(self) -> None:
        super().__init__("channel-stand-in")
        self._lock = threading.Lock()
        self._requests: dict[str, list[ChannelRequest]] = {}
        self._other: list[tuple[str, str]] = []
        self._faults: dict[str, int | None] = {}  # conversation -> status to fail with, None = hang
        self._held: list[_Held] = []
        self._scripts: dict[str, deque[Answer]] = {}

    @property
    def service_url(self) -> str:
        return self.base_url

    @property
    def other_requests(self) -> list[tuple[str, str]]:
        """(method, path) of requests that matched no conversation route."""
        with self._lock:
            return list(self._other)

    def requests(self, conversation_id: str) -> list[ChannelRequest]:
        """Every answered request for the conversation, faults included, in arrival order."""
        with self._lock:
            return list(self._requests.get(conversation_id, []))

    def replies(self, conversation_id: str) -> list[Activity]:
        """Activities the bot successfully POSTed to the conversation (any type)."""
        return [
            r.activity
            for r in self.requests(conversation_id)
            if r.method == "POST" and r.status == 200 and r.activity is not None
        ]

    def messages(self, conversation_id: str) -> list[Activity]:
        return [a for a in self.replies(conversation_id) if a.get("type") == "message"]

    def held(self, conversation_id: str) -> int:
        """How many requests for the conversation are currently being left unanswered."""
        with self._lock:
            return sum(1 for h in self._held if h.request.conversation_id == conversation_id)

    def wait_for_replies(
        self, conversation_id: str, count: int = 1, timeout: float = 10.0, messages_only: bool = False
    ) -> list[Activity]:
        """Poll until at least `count` replies arrived; blocks the thread (use the async variant in async tests)."""
        return wait_until(
            lambda: self._at_least(conversation_id, count, messages_only),
            timeout=timeout,
            message=f"{count} {'message' if messages_only else 'reply'} activities in {conversation_id!r}",
        )

    async def wait_for_replies_async(
        self,
        conversation_id: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
        messages_only: bool = False,
    ) -> list[Activity]:
        return await wait_until_async(
            lambda: self._at_least(conversation_id, count, messages_only),
            timeout=timeout,
            message=f"{count} {'message' if messages_only else 'reply'} activities in {conversation_id!r}",
        )

    def _at_least(self, conversation_id: str, count: int, messages_only: bool) -> list[Activity] | None:
        found = self.messages(conversation_id) if messages_only else self.replies(conversation_id)
        return found if len(found) >= count else None

    def hang(self, conversation_id: str) -> None:
        """Leave requests for the conversation unanswered until `recover()` or `stop()`."""
        with self._lock:
            self._faults[conversation_id] = None

    def script(self, conversation_id: str, *answers: Answer) -> None:
        """Answer the conversation's next requests with `answers`, one each, in order; then as before."""
        with self._lock:
            self._scripts.setdefault(conversation_id, deque()).extend(answers)

    def fail(self, conversation_id: str, status: int) -> None:
        with self._lock:
            self._faults[conversation_id] = status

    def recover(self, conversation_id: str) -> None:
        """Clear the conversation's fault; held requests then get answered normally."""
        with self._lock:
            self._faults.pop(conversation_id, None)
        if self.running:
            self.call_in_loop(lambda: self._release(conversation_id, True))

    async def before_shutdown(self) -> None:
        await self._release(None, False)

    async def _release(self, conversation_id: str | None, proceed: bool) -> None:
        with self._lock:
            for held in self._held:
                if conversation_id in (None, held.request.conversation_id) and not held.outcome.done():
                    held.outcome.set_result(proceed)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path
        found = route(path)
        body = await request.read()
        if found is None or request.method not in ("POST", "PUT", "DELETE"):
            with self._lock:
                self._other.append((request.method, path))
            return web.json_response(error_response("NotFound", f"no route for {request.method} {path}"), status=404)
        draft = ChannelRequest(
            method=request.method,
            path=path,
            conversation_id=found.conversation_id,
            activity_id=found.activity_id,
            activity=_parse_activity(body),
            authorization=request.headers.get("Authorization"),
            status=0,
        )
        with self._lock:
            script = self._scripts.get(draft.conversation_id)
            scripted = script.popleft() if script else None
        if scripted is not None:
            return self._scripted(request, draft, scripted)
        with self._lock:
            fault = self._faults.get(draft.conversation_id, 200)
            held = _Held(draft, asyncio.get_running_loop().create_future()) if fault is None else None
            if held is not None:
                self._held.append(held)
        if held is not None:
            try:
                proceed = await held.outcome
            finally:
                with self._lock:
                    self._held.remove(held)
            if not proceed:
                raise web.HTTPServiceUnavailable()
        return self._answer(draft, 200 if fault is None else fault)

    def _scripted(self, request: web.BaseRequest, draft: ChannelRequest, answer: Answer) -> web.Response:
        if not answer.reset:
            response = self._answer(draft, answer.status)
            response.headers.update(answer.headers)
            return response
        with self._lock:
            self._requests.setdefault(draft.conversation_id, []).append(draft)  # status 0: never answered
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPServiceUnavailable()  # not sent: the connection is gone

    def _answer(self, draft: ChannelRequest, status: int) -> web.Response:
        if status == 200 and draft.method == "POST" and draft.activity is None:
            status = 400
        record = dataclasses.replace(draft, status=status)
        with self._lock:
            self._requests.setdefault(record.conversation_id, []).append(record)
        if status != 200:
            return web.json_response(error_response("ServiceError", f"simulated status {status}"), status=status)
        if record.method == "POST":
            return web.json_response(resource_response())
        return web.json_response({})


def _parse_activity(body: bytes) -> Activity | None:
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None
