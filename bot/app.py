"""The aiohttp application: /api/messages with its request checks, /healthz. The only module that knows HTTP."""

from __future__ import annotations

import asyncio
import email.errors
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import aiohttp
from aiohttp import hdrs, web
from botbuilder.core import ConversationState, MemoryStorage, NullTelemetryClient, Storage, UserState
from botbuilder.schema import Activity, ActivityTypes

from bot import compat, vocabulary
from bot.adapter import ChatAdapter
from bot.bot import ChatBot
from bot.faults import FaultInjection
from bot.hooks import AUTH_FAILURE, REJECTION, Instrumentation, NoInstrumentation
from bot.refusals import REFUSAL_LOG, REFUSAL_MESSAGE, RefusalLog, log_refusals
from bot.routes import RouteFactory, shipped_routes
from bot.routing import Router
from bot.settings import Settings
from bot.storage import STORE_BLOB
from bot.storage.blob import BlobStateStorage
from bot.storage.observed import ObservedStorage
from bot.storage.turns import ConversationTurnGuard

log = logging.getLogger("bot.app")

MESSAGES_ROUTE = "/api/messages"


@dataclass
class BotRuntime:
    settings: Settings
    bot: ChatBot
    adapter: ChatAdapter
    faults: FaultInjection
    turns_in_flight: int = 0


RUNTIME = web.AppKey("runtime", BotRuntime)


def error_response(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error body naming the problem; the response is marked so telemetry counts the rejection."""
    response = web.json_response({"error": {"code": reason, "message": message}}, status=status, headers=headers)
    response[REJECTION] = reason
    response[REFUSAL_MESSAGE] = message
    return response


async def messages(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    if request.method != "POST":
        return error_response(405, vocabulary.REJECT_METHOD, "use POST to send an Activity", {"Allow": "POST"})
    return await _messages(request, runtime)


def _media_type(request: web.Request) -> str:
    try:
        return request.content_type
    except (ValueError, LookupError, email.errors.MessageError):
        # aiohttp parses the header with the stdlib e-mail parser, which fails on some malformed values (";0*").
        return request.headers.get(hdrs.CONTENT_TYPE, "")


async def _messages(request: web.Request, runtime: BotRuntime) -> web.StreamResponse:
    media_type = _media_type(request)
    if media_type != "application/json":
        return error_response(
            415, vocabulary.REJECT_MEDIA_TYPE, f"Content-Type must be application/json, got {media_type!r}"
        )
    limit = runtime.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return error_response(413, vocabulary.REJECT_TOO_LARGE, f"the body is larger than {limit} bytes")
    # A client that sends its body slowly or not at all is cut off; it holds no turn slot while it is read.
    timeout = runtime.settings.body_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, vocabulary.REJECT_TOO_LARGE, f"the body is larger than {limit} bytes")
    except TimeoutError:
        response = error_response(408, vocabulary.REJECT_TIMEOUT, f"the body was not received within {timeout:g} s")
        response.force_close()
        return response
    if not raw.strip():
        return error_response(400, vocabulary.REJECT_INVALID_JSON, "the body is empty; expected an Activity as JSON")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:
        message = f"the body is not valid JSON: {error}" if isinstance(error, ValueError) else "JSON nested too deeply"
        return error_response(400, vocabulary.REJECT_INVALID_JSON, message)
    try:
        activity = compat.parse_activity(body)
        require_routing_fields(activity)
    except ValueError as error:
        return error_response(400, vocabulary.REJECT_NOT_AN_ACTIVITY, str(error))
    adapter = runtime.adapter
    try:
        authenticated = await compat.authenticate_or_refuse(
            adapter.bot_framework_authentication, activity, request.headers.get("Authorization", "")
        )
    except PermissionError as error:
        refused = error_response(401, vocabulary.REJECT_UNAUTHORIZED, str(error) or "authentication failed")
        refused[AUTH_FAILURE] = getattr(error, "reason", vocabulary.AUTH_OTHER)
        return refused
    # Slots are for turns: taken only by a fully read, authenticated activity, so slow or unauthenticated clients
    # cannot lock the others out.
    if runtime.turns_in_flight >= runtime.settings.max_concurrent_turns:
        # Refuse at once rather than queue without limit: the channel retries after Retry-After.
        message = f"the bot is handling {runtime.turns_in_flight} turns, its limit; retry in a second"
        return error_response(503, vocabulary.REJECT_OVERLOADED, message, {"Retry-After": "1"})
    runtime.turns_in_flight += 1
    try:
        invoke_response = await adapter.process_activity(authenticated, activity, runtime.bot.on_turn)
    finally:
        runtime.turns_in_flight -= 1
    if invoke_response:
        if activity.type == ActivityTypes.invoke and invoke_response.status == HTTPStatus.NOT_IMPLEMENTED:
            # botbuilder's (and every Bot Framework SDK's) answer to an invoke the bot does not handle: kept, and
            # counted as a refused request, not a server error.
            message = f"the bot does not handle invoke activities named {(activity.name or '')[:100]!r}"
            return error_response(501, vocabulary.REJECT_UNSUPPORTED_INVOKE, message)
        return web.json_response(compat.invoke_response_body(invoke_response), status=invoke_response.status)
    return web.Response(status=201)


def require_routing_fields(activity: Activity) -> None:
    """Refuses only the activities that cannot be answered safely (docs/reliability.md, "Lenient activities").

    Without a serviceUrl botbuilder would send the replies to a public Bot Framework host. The conversation and
    user state are keyed by channelId, conversation.id and from.id: botbuilder refuses mid-turn to build a key
    without them, and a made-up key would share one conversation's or user's state with every other such client.
    `recipient` (the bot itself), `locale` and `timestamp` are optional, as in stock botbuilder.
    """
    missing = [
        name
        for name, value in (
            ("channelId", activity.channel_id),
            ("serviceUrl", activity.service_url),
            ("conversation.id", activity.conversation and activity.conversation.id),
            ("from.id", activity.from_property and activity.from_property.id),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"the Activity lacks {', '.join(missing)}")
    if urlsplit(activity.service_url).scheme not in ("http", "https"):
        raise ValueError("the Activity's serviceUrl is not an http(s) URL")


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(
    settings: Settings,
    instrumentation: Instrumentation | None = None,
    storage: Storage | None = None,
    routes: RouteFactory = shipped_routes,
) -> web.Application:
    """The bot's web application. `instrumentation` (telemetry's is telemetry.wiring.instrument) wraps it from
    outside; without it no telemetry code is imported. `routes` builds how messages are answered (bot/routes.py)."""
    hooks: Instrumentation = instrumentation or NoInstrumentation()
    network_store: BlobStateStorage | None = None
    if storage is None and settings.state_store == STORE_BLOB:
        # Built here (no I/O yet): its client belongs to the app's event loop and is closed with the app.
        storage = network_store = BlobStateStorage.from_settings(settings, hooks.storage_observer)
    # A store the app makes itself is private to this process; one passed in (workers' SQLite, a test's) may be shared.
    private_store = storage is None
    storage = storage or MemoryStorage()
    if hooks.storage_observer is not None and not isinstance(storage, BlobStateStorage):  # that one observes itself
        storage = ObservedStorage(storage, settings.state_store, hooks.storage_observer)
    conversation_state = ConversationState(storage)
    user_state = UserState(storage)
    telemetry_client = hooks.telemetry_client or NullTelemetryClient()
    answers = None
    if settings.model is not None:
        # Imported only with a model configured: the openai client is a large import.
        from bot.answers.engine import AnswerEngine
        from bot.answers.turn import ModelAnswers
        from bot.knowledge import KnowledgeBase

        engine = AnswerEngine(settings.model, KnowledgeBase.load(), hooks.answer_observer)
        answers = ModelAnswers(engine, conversation_state, settings.app_id)
    router = Router(routes(user_state, telemetry_client))
    bot = ChatBot(conversation_state, user_state, router, telemetry_client, answers)
    faults = FaultInjection(settings.faults, telemetry_client)
    turn_guard = ConversationTurnGuard(
        conversation_state, [user_state], hooks.storage_observer, private_store=private_store
    )

    # The refusal log sits inside the telemetry middleware, so its lines carry the request's trace id.
    middlewares = [*hooks.http_middlewares, log_refusals]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)  # type: ignore[arg-type]
    app[REFUSAL_LOG] = RefusalLog()

    async def channel_session(app: web.Application) -> AsyncIterator[None]:
        # One pooled session for every reply to every channel; created on the running loop.
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300)
        async with aiohttp.ClientSession(
            connector=connector, trace_configs=list(hooks.client_trace_configs)
        ) as session:
            # Telemetry first, so it sees what the fault injection does to a turn.
            # The guard innermost: a turn it reruns is one turn for telemetry and fault injection.
            middleware = [*hooks.turn_middlewares, faults, turn_guard]
            adapter = ChatAdapter(settings, session, conversation_state, middleware)
            app[RUNTIME] = BotRuntime(settings=settings, bot=bot, adapter=adapter, faults=faults)
            if answers is None:
                yield
                return
            await answers.open()
            try:
                yield
            finally:
                # After the turns in flight: late answers still pending are cancelled (and counted) here.
                await answers.close()

    app.cleanup_ctx.append(channel_session)
    if network_store is not None:
        store = network_store

        async def close_store(_: web.Application) -> None:
            await store.aclose()

        app.on_cleanup.append(close_store)
    app.router.add_route("*", MESSAGES_ROUTE, messages)
    app.router.add_get("/healthz", healthz)
    return app
