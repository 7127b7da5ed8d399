"""Questions to the language model: one async streaming chat completion per question, grounded on the knowledge base.

Retries: the official client retries 408/409/429/5xx and dropped connections twice by default, sleeping for the
server's retry-after (up to 60 s) in between. The engine sets `max_retries=0`:
- a user is waiting: the fallback answer now beats a retry that may land after the channel gave up (15 s), and a
  retry-after of a 429 is usually longer than that;
- retries inside the client are invisible from outside its call: the `chat` span and its metrics would show a
  success where a 429 happened, so the 429 ratio and its alert would read low exactly when quota runs out;
- a retry storm against a throttled deployment only deepens the throttling.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import openai

from bot.answers.config import AZURE_TOKEN_SCOPE, PROVIDER_AZURE, ModelSettings
from bot.answers.observer import AnswerObserver, CallRequest, ModelCall, ModelReply, NullObserver
from bot.knowledge import KnowledgeBase

MAX_RETRIES = 0
# A single question or remembered message longer than this is cut: it bounds the prompt (and the bill) of a turn.
MAX_MESSAGE_CHARACTERS = 2000

SYSTEM_INSTRUCTIONS = (
    "You are otel-chatbot, a small Bot Framework bot that shows how to monitor a bot with OpenTelemetry. "
    "Answer briefly (at most a few sentences) and only from the reference below and the conversation. If the "
    "reference does not cover the question, say that you do not know and suggest typing `help`. Never invent "
    "commands, links, metric names or settings."
)


class ModelFailure(Exception):
    """The model gave no usable answer; `error_type` is the bounded reason recorded as error.type."""

    def __init__(self, error_type: str, description: str = "") -> None:
        super().__init__(description or error_type)
        self.error_type = error_type


def system_prompt(knowledge: KnowledgeBase) -> str:
    """The instructions and the knowledge base itself as the reference the model answers from."""
    lines = [SYSTEM_INSTRUCTIONS, "", "Reference:"]
    for entry in knowledge.entries:
        lines.append(f"- Q: {entry.questions[0]}\n  A: {entry.answer}")
    return "\n".join(lines)


def error_type(error: BaseException) -> str:
    """error.type of a failed call: the HTTP status the server answered, else a bounded name for what happened."""
    if isinstance(error, openai.APIStatusError):
        return str(error.status_code)
    if isinstance(error, openai.APITimeoutError | TimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection_error"
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def _clip(text: str) -> str:
    return text[:MAX_MESSAGE_CHARACTERS]


class AnswerEngine:
    def __init__(
        self, settings: ModelSettings, knowledge: KnowledgeBase, observer: AnswerObserver | None = None
    ) -> None:
        self.settings = settings
        self.observer: AnswerObserver = observer or NullObserver()
        self._system = {"role": "system", "content": system_prompt(knowledge)}
        self._client: openai.AsyncOpenAI | None = None
        self._credential: Any = None

    async def open(self) -> None:
        """Create the client on the running loop (its connection pool belongs to it)."""
        settings = self.settings
        # The client's own timeout bounds each HTTP exchange; the engine's bounds the whole streamed answer.
        options: dict[str, Any] = {"max_retries": MAX_RETRIES, "timeout": settings.timeout_seconds}
        if settings.provider == PROVIDER_AZURE:
            if settings.uses_managed_identity:
                from azure.identity.aio import ManagedIdentityCredential, get_bearer_token_provider

                client_id = settings.managed_identity_client_id or None
                self._credential = ManagedIdentityCredential(client_id=client_id)
                token_provider: Callable[[], Awaitable[str]] = get_bearer_token_provider(
                    self._credential, AZURE_TOKEN_SCOPE
                )
                options["azure_ad_token_provider"] = token_provider
            else:
                options["api_key"] = settings.api_key
            self._client = openai.AsyncAzureOpenAI(
                azure_endpoint=settings.azure_endpoint,
                azure_deployment=settings.model,
                api_version=settings.api_version,
                **options,
            )
        else:
            self._client = openai.AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key, **options)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None

    def messages(self, question: str, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        recent = list(history)[-self.settings.history_messages :] if self.settings.history_messages else []
        remembered = [{"role": m["role"], "content": _clip(m["content"])} for m in recent]
        return [self._system, *remembered, {"role": "user", "content": _clip(question)}]

    async def answer(self, question: str, history: Sequence[Mapping[str, str]], conversation_id: str) -> ModelReply:
        """The model's answer, or ModelFailure. The call is recorded through the observer either way."""
        if self._client is None:
            raise RuntimeError("AnswerEngine.open() was not called")
        settings = self.settings
        messages = self.messages(question, history)
        address, port = settings.server
        request = CallRequest(
            provider=settings.provider,
            model=settings.model,
            server_address=address,
            server_port=port,
            conversation_id=conversation_id,
            messages=messages,
            max_output_tokens=settings.max_output_tokens,
            capture_content=settings.capture_content,
        )
        call = self.observer.start_call(request)
        try:
            async with asyncio.timeout(settings.timeout_seconds):
                reply = await self._stream(self._client, messages, call)
        except asyncio.CancelledError:
            call.failed("cancelled", "the answer was cancelled")
            raise
        except (openai.OpenAIError, TimeoutError, ValueError) as error:
            kind = error_type(error)
            call.failed(kind, f"{type(error).__name__}: {error}")
            raise ModelFailure(kind, str(error)) from error
        if not reply.text:
            call.failed("empty_answer", f"finish reasons {list(reply.finish_reasons)}")
            raise ModelFailure("empty_answer")
        call.succeeded(reply)
        return dataclasses.replace(reply, reference=call.reference)

    async def _stream(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], call: ModelCall) -> ModelReply:
        stream = await client.chat.completions.create(  # type: ignore[call-overload]
            model=self.settings.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=self.settings.max_output_tokens,
        )
        parts: list[str] = []
        finish_reasons: list[str] = []
        response_id: str | None = None
        response_model: str | None = None
        input_tokens: int | None = None
        output_tokens: int | None = None
        first = True
        async with stream:
            async for chunk in stream:
                # Azure's first chunk (prompt filter results) has no id, model or choices.
                response_id = response_id or chunk.id or None
                response_model = response_model or chunk.model or None
                if chunk.usage is not None:
                    input_tokens, output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if first:
                        first = False
                        call.first_chunk()
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
                    if choice.finish_reason:
                        finish_reasons.append(choice.finish_reason)
        return ModelReply(
            text="".join(parts).strip(),
            response_model=response_model,
            response_id=response_id,
            finish_reasons=tuple(finish_reasons),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
