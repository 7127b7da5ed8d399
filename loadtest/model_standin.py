"""A local stand-in for an OpenAI-compatible chat completions endpoint (OpenAI and Azure OpenAI paths).

Nothing here can reach a real model; this server encodes the documented wire format so the bot's official `openai`
client talks to it unchanged:

- OpenAI API reference, "Create chat completion" (POST /v1/chat/completions) and "The chat completion chunk object":
  a non-streaming answer is one `chat.completion` object with `usage`; with `"stream": true` the body is
  server-sent events, each `data: {chat.completion.chunk}` followed by a blank line, the first delta carrying
  `role: assistant`, the last choice chunk carrying `finish_reason`, then, when `stream_options.include_usage` is
  true, one more chunk with `"choices": []` and the `usage` of the whole request (every other chunk then has
  `"usage": null`), and finally `data: [DONE]`.
- OpenAI API reference, "Error codes": errors are `{"error": {"message", "type", "param", "code"}}`; 429 (rate limit)
  carries `retry-after` (seconds), which the official client honours.
- Azure OpenAI REST reference, "Chat completions": POST /openai/deployments/{deployment}/chat/completions
  ?api-version=..., authenticated by an `api-key` header or an Entra ID bearer token, `model` taken from the
  deployment; a missing api-version is a 404. Azure's stream starts with a chunk that has `"choices": []` and
  `prompt_filter_results` (and an empty id and model), which a client must skip.

Tokens are counted by a crude rule (words and punctuation marks), not a real tokenizer: what matters here is that the
bot reports exactly what the server said it used, so the stand-in totals what it served for the reconciliation.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from loadtest.rig.background import BackgroundServer

__all__ = ["ModelRequest", "ModelStandIn", "Scripted", "count_tokens"]

OPENAI_PATH = "/v1/chat/completions"
_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\S+\s*")
# Response models name a snapshot of the requested one, as both services do ("gpt-4o-mini" -> "...-2024-07-18").
SNAPSHOT_SUFFIX = "-2024-07-18"


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def pieces(text: str) -> list[str]:
    """The answer as the chunks the stand-in streams: one word (with its trailing space) per chunk and token."""
    return _PIECE.findall(text) or [text]


@dataclass(frozen=True)
class Scripted:
    """What the stand-in does with one request: answer `text` (default: its usual answer), or fail with `status`,
    after waiting `delay` seconds before the first byte (the "slow" mode)."""

    text: str | None = None
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ModelRequest:
    path: str
    deployment: str | None
    api_version: str | None
    authorization: str  # "api-key", "bearer" or "" (how the client authenticated; never the secret)
    body: dict[str, Any]


@dataclass
class _Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    answers: int = 0
    errors: dict[int, int] = field(default_factory=dict)


class ModelStandIn(BackgroundServer):
    """OpenAI-compatible chat completions on 127.0.0.1. `script()` queues behaviours for the next requests; `slow`,
    `fail_with` set a standing behaviour for every request until `recover()`."""

    def __init__(self, default_answer: str = "This is the stand-in model answering your question.") -> None:
        super().__init__("model-standin")
        self.default_answer = default_answer
        self._lock = threading.Lock()
        self._queue: list[Scripted] = []
        self._standing: Scripted | None = None
        self._requests: list[ModelRequest] = []
        self._totals = _Totals()
        self._held = False
        self._release: asyncio.Event | None = None  # created on the server's loop
        self._waiting = 0

    # ---- configuration (any thread) ---------------------------------------------------------------------------
    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def azure_endpoint(self) -> str:
        return self.base_url

    def bot_env(self, model: str = "gpt-4o-mini", **extra: str) -> dict[str, str]:
        """The bot's settings for answering through this stand-in as an OpenAI-compatible server."""
        return {"OPENAI_BASE_URL": self.openai_base_url, "OPENAI_API_KEY": "stand-in", "OPENAI_MODEL": model, **extra}

    def script(self, *behaviours: Scripted | str) -> None:
        with self._lock:
            self._queue.extend(Scripted(text=b) if isinstance(b, str) else b for b in behaviours)

    def fail_with(self, status: int, retry_after: float | None = None) -> None:
        with self._lock:
            self._standing = Scripted(status=status, retry_after=retry_after)

    def slow(self, delay: float) -> None:
        with self._lock:
            self._standing = Scripted(delay=delay)

    def hold(self) -> None:
        """Leave every request unanswered (no first byte) until `release()`: a model slower than any threshold."""
        with self._lock:
            self._held = True

    def release(self) -> None:
        with self._lock:
            self._held = False

        async def wake() -> None:
            if self._release is not None:
                self._release.set()

        self.call_in_loop(wake)

    @property
    def waiting(self) -> int:
        """Requests held right now."""
        with self._lock:
            return self._waiting

    async def before_shutdown(self) -> None:
        if self._release is not None:
            self._release.set()

    def recover(self) -> None:
        with self._lock:
            self._standing = None
            self._queue.clear()

    # ---- what was served ------------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[ModelRequest]:
        with self._lock:
            return list(self._requests)

    def served_tokens(self) -> tuple[int, int]:
        """(input, output) tokens of every successful answer so far, as reported to the client in `usage`."""
        with self._lock:
            return self._totals.input_tokens, self._totals.output_tokens

    @property
    def answers(self) -> int:
        with self._lock:
            return self._totals.answers

    def errors(self, status: int) -> int:
        with self._lock:
            return self._totals.errors.get(status, 0)

    # ---- the server ---------------------------------------------------------------------------------------------
    def _next(self) -> Scripted:
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
            return self._standing or Scripted()

    async def _wait_while_held(self) -> None:
        if self._release is None:
            self._release = asyncio.Event()
        while True:
            with self._lock:
                if not self._held:
                    return
                self._release.clear()
                self._waiting += 1
            try:
                await self._release.wait()
            finally:
                with self._lock:
                    self._waiting -= 1

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        deployment: str | None = None
        azure = _AZURE_PATH.match(request.path)
        if azure:
            deployment = azure.group(1)
            if not request.query.get("api-version"):
                return _error(404, "Resource not found", "invalid_request_error", "404")
        elif request.path != OPENAI_PATH:
            return _error(404, f"Unknown path {request.path}", "invalid_request_error", "unknown_url")
        if request.method != "POST":
            return _error(405, "Use POST", "invalid_request_error", "method_not_allowed")
        authorization = _authorization(request, azure=bool(azure))
        if not authorization:
            return _error(401, "Missing or empty credentials", "invalid_request_error", "invalid_api_key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "The body is not valid JSON", "invalid_request_error", None)
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array", "invalid_request_error", None, "messages")
        model = deployment or body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error", None, "model")
        with self._lock:
            self._requests.append(
                ModelRequest(request.path, deployment, request.query.get("api-version"), authorization, body)
            )
        behaviour = self._next()
        await self._wait_while_held()
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.status != 200:
            with self._lock:
                self._totals.errors[behaviour.status] = self._totals.errors.get(behaviour.status, 0) + 1
            return _failure(behaviour)
        text = behaviour.text if behaviour.text is not None else self.default_answer
        usage = _usage(messages, text)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        response_model = model + SNAPSHOT_SUFFIX
        with self._lock:
            self._totals.input_tokens += usage["prompt_tokens"]
            self._totals.output_tokens += usage["completion_tokens"]
            self._totals.answers += 1
        if not body.get("stream"):
            return web.json_response(_completion(completion_id, response_model, text, behaviour.finish_reason, usage))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for chunk in _chunks(completion_id, response_model, text, behaviour.finish_reason, usage, include_usage, azure):
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _authorization(request: web.BaseRequest, azure: bool) -> str:
    if azure and request.headers.get("api-key", "").strip():
        return "api-key"
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer ") and bearer[7:].strip():
        return "bearer"
    return ""


def _usage(messages: list[Any], text: str) -> dict[str, int]:
    prompt = sum(count_tokens(str(m.get("content") or "")) for m in messages if isinstance(m, dict))
    completion = len(pieces(text))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(completion_id: str, model: str, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_standin",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def _chunks(
    completion_id: str,
    model: str,
    text: str,
    finish_reason: str,
    usage: dict[str, int],
    include_usage: bool,
    azure: object,
) -> Iterator[dict[str, Any]]:
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_standin",
            "choices": choices,
        }
        if include_usage:
            body["usage"] = None
        body.update(extra)
        return body

    if azure:
        filters = [{"prompt_index": 0, "content_filter_results": {}}]
        yield {"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": filters}
    yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
    for piece in pieces(text):
        yield chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
    yield chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}])
    if include_usage:
        yield chunk([], usage=usage)


def _error(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _failure(behaviour: Scripted) -> web.Response:
    if behaviour.status == 429:
        headers = {}
        if behaviour.retry_after is not None:
            headers["retry-after"] = f"{behaviour.retry_after:g}"
            headers["retry-after-ms"] = str(int(behaviour.retry_after * 1000))
        message = "Rate limit reached for requests. Please try again later."
        return _error(429, message, "requests", "rate_limit_exceeded", headers=headers)
    if behaviour.status >= 500:
        return _error(behaviour.status, "The server had an error while processing your request.", "server_error", None)
    return _error(behaviour.status, "The request was refused.", "invalid_request_error", None)
