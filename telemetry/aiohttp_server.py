"""aiohttp server instrumentation: a SERVER span and `http.server.request.duration` per request, and a count of
the requests the application refused (it marks the response with the catalog's rejection reason).

opentelemetry-instrumentation-aiohttp-server replaces `web.Application` globally and takes its meter from the
global provider, so one process could hold only one configuration. This middleware takes its tracer and
instruments explicitly and follows the same HTTP semantic conventions.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetry import catalog
from telemetry.instruments import Instruments, Labels

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_propagator = TraceContextTextMapPropagator()
UNTRACED_PATHS = frozenset({"/healthz", "/metrics"})
# The application marks a refused request's response with the reason (one of catalog.REJECTIONS).
REJECTION = web.ResponseKey(catalog.REJECTION_REASON, str)


def _route(request: web.Request) -> str | None:
    info = request.match_info.route.resource
    return info.canonical if info is not None else None


def _request_attributes(request: web.Request, method: str, route: str | None) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        catalog.HTTP_METHOD: method,
        "url.scheme": request.scheme,
        "url.path": request.path,
        "server.address": request.host.split(":")[0],
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
    }
    if route:
        attributes[catalog.HTTP_ROUTE] = route
    user_agent = request.headers.get("User-Agent")
    if user_agent:
        attributes["user_agent.original"] = user_agent[:256]
    return attributes


def server_middleware(
    tracer: trace.Tracer, instruments: Instruments, untraced: Collection[str] = UNTRACED_PATHS
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in untraced:
            return await handler(request)
        route = _route(request)
        method = request.method if request.method in _KNOWN_METHODS else "_OTHER"
        name = f"{method} {route}" if route else method
        parent = _propagator.extract(request.headers)
        start = time.perf_counter()
        status: int = 500
        error_type: str | None = None
        # The request's attributes are set once the sampler has decided (none of ours reads them): an untraced
        # request does not compute them.
        with tracer.start_as_current_span(
            name,
            context=parent,
            kind=trace.SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            traced = span.is_recording()
            if traced:
                span.set_attributes(_request_attributes(request, method, route))
            try:
                response = await handler(request)
                status = response.status
                rejection = response.get(REJECTION)
                if rejection:
                    if traced:
                        span.set_attribute(catalog.REJECTION_REASON, rejection)
                    instruments.requests_rejected.add(
                        1, {catalog.REJECTION_REASON: rejection, catalog.HTTP_STATUS: status}
                    )
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception as exc:
                error_type = type(exc).__qualname__
                span.record_exception(exc)
                raise
            finally:
                if status >= 500:
                    error_type = error_type or str(status)
                if traced:
                    span.set_attribute(catalog.HTTP_STATUS, status)
                    if status >= 500:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))
                        span.set_attribute(catalog.ERROR_TYPE, error_type or str(status))
                labels: Labels = ((catalog.HTTP_METHOD, method), (catalog.HTTP_STATUS, status))
                if route:
                    labels += ((catalog.HTTP_ROUTE, route),)
                if error_type:
                    labels += ((catalog.ERROR_TYPE, error_type),)
                instruments.record_http_server_duration(time.perf_counter() - start, labels)

    return middleware


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
