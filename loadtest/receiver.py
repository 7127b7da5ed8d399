"""The `channel` transport's reply receiver: what the bot sees as the conversation's serviceUrl.

The bot POSTs each reply to `{serviceUrl}/v3/conversations/{conversationId}/activities/{replyToId}`. The board
matches it to the turn waiting for it (conversation id + replyToId; by conversation alone when a channel leaves
replyToId out). It uses threading primitives, which Locust's monkey-patching makes cooperative.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from loadtest.rig.activities import Activity
from loadtest.rig.channel import error_response, resource_response, route

StartResponse = Callable[[str, list[tuple[str, str]]], object]


@dataclass
class PendingTurn:
    """A turn whose replies are awaited; `replied_at` is when its first message arrived (perf_counter)."""

    conversation_id: str
    activity_id: str
    sent_at: float
    activities: list[Activity] = field(default_factory=list)
    replied_at: float | None = None
    _arrived: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float) -> bool:
        return self._arrived.wait(timeout)

    @property
    def reply_seconds(self) -> float | None:
        return None if self.replied_at is None else self.replied_at - self.sent_at


class ReplyBoard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, PendingTurn] = {}  # conversation id -> its (only) turn in flight
        self.received = 0
        self.unmatched = 0

    def expect(self, conversation_id: str, activity_id: str, sent_at: float) -> PendingTurn:
        turn = PendingTurn(conversation_id, activity_id, sent_at)
        with self._lock:
            self._pending[conversation_id] = turn
        return turn

    def forget(self, turn: PendingTurn) -> None:
        with self._lock:
            if self._pending.get(turn.conversation_id) is turn:
                del self._pending[turn.conversation_id]

    def deliver(self, conversation_id: str, reply_to_id: str | None, activity: Activity, arrived_at: float) -> bool:
        """Attach a reply to its turn; False when no turn of that conversation (and replyToId) is waiting."""
        with self._lock:
            self.received += 1
            turn = self._pending.get(conversation_id)
            if turn is None or (reply_to_id and reply_to_id != turn.activity_id):
                self.unmatched += 1
                return False
            turn.activities.append(activity)
            if activity.get("type") == "message" and turn.replied_at is None:
                turn.replied_at = arrived_at
                turn._arrived.set()
        return True


def wsgi_app(board: ReplyBoard) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI application answering the Bot Framework connector routes the bot calls."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        arrived_at = time.perf_counter()
        found = route(environ.get("PATH_INFO", ""))
        if found is None or environ.get("REQUEST_METHOD") not in ("POST", "PUT"):
            return _json(start_response, "404 Not Found", error_response("NotFound", "no such route"))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            activity = json.loads(environ["wsgi.input"].read(length) or b"null")
        except ValueError:
            activity = None
        if not isinstance(activity, dict):
            return _json(start_response, "400 Bad Request", error_response("BadArgument", "no activity"))
        board.deliver(found.conversation_id, found.activity_id, activity, arrived_at)
        return _json(start_response, "200 OK", resource_response())

    return app


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


def start_receiver(board: ReplyBoard) -> tuple[Any, str]:
    """Serve the board on 127.0.0.1 (ephemeral port) from the running gevent hub: (server, service URL)."""
    from gevent.pywsgi import WSGIServer  # only the Locust process runs gevent

    server = WSGIServer(("127.0.0.1", 0), wsgi_app(board), log=None)
    server.start()
    return server, f"http://127.0.0.1:{server.server_port}"
