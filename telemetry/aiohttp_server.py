"""aiohttp server instrumentation: a SERVER span and `http.server.request.duration` per request, and a count of
the requests the application refused (it marks the response with the catalog's rejection reason).

opentelemetry-instrumentation-aiohttp-server replaces `web.Application` globally and takes its meter from the
global provider, so one process could hold only one configuration. This middleware takes its tracer and
instruments explicitly and follows the same HTTP semantic conventions.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable, Collection

from aiohttp import hdrs, web
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# The application marks a refused request's response with the reason (one of catalog.REJECTIONS) and, for a failed
# authentication, why (one of catalog.AUTH_FAILURES): the bot's hooks protocol.
from bot.hooks import AUTH_FAILURE, REJECTION
from telemetry import catalog
from telemetry.correlation import RequestOutcome, current_request, qualified_type
from telemetry.instruments import Instruments, Labels

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_propagator = TraceContextTextMapPropagator()
UNTRACED_PATHS = frozenset({"/healthz", "/metrics"})


def _route(request: web.Request) -> str | None:
    info = request.match_info.route.resource
    return info.canonical if info is not None else None


def _last(value: str | None) -> str | None:
    """The entry the nearest proxy added to a comma-separated forwarding header (earlier ones the client can forge)."""
    if not value:
        return None
    return value.rsplit(",", 1)[-1].strip().strip('"') or None


def _forwarded(request: web.Request) -> dict[str, str]:
    """RFC 7239 `Forwarded`, last element, as {for, proto, host}; else the X-Forwarded-* headers."""
    found: dict[str, str] = {}
    element = _last(request.headers.get(hdrs.FORWARDED))
    if element:
        for pair in element.split(";"):
            key, _, value = pair.partition("=")
            found[key.strip().lower()] = value.strip().strip('"')
    for key, header in (("for", "X-Forwarded-For"), ("proto", "X-Forwarded-Proto"), ("host", "X-Forwarded-Host")):
        forwarded = None if key in found else _last(request.headers.get(header))
        if forwarded:
            found[key] = forwarded
    return found


def _host_and_port(authority: str, default_port: int | None) -> tuple[str | None, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` (a bare v6 address too) as (host, port)."""
    authority = authority.strip()
    host, port_text = authority, ""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, _, port_text = authority.partition(":")
    port = int(port_text) if port_text.isdigit() and int(port_text) < 65536 else default_port
    return (host or None), port


def anonymised_address(address: str) -> str:
    """The network, not the machine: IPv4 with its last octet zeroed, IPv6 cut to its /48 (as Application Insights
    and web analytics do). Anything else (a name in a forwarding header) reads `unknown`."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unknown"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def _socket_address(request: web.Request, name: str) -> tuple[str | None, int | None]:
    transport = request.transport
    address = transport.get_extra_info(name) if transport is not None else None
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None, None


def _request_attributes(
    request: web.Request, method: str, route: str | None, scheme: str, forwarded: dict[str, str] | None
) -> dict[str, str | int]:
    """The HTTP server span's attributes (semantic conventions), from what cannot be forged: the socket, or with a
    trusted proxy in front (BOT_TRUST_FORWARDED_HEADERS) what the proxy forwarded. The raw Host header and an
    unmatched path are left out: a client could put anything there, personal data included."""
    server_host, server_port = _socket_address(request, "sockname")
    client_host, _ = _socket_address(request, "peername")
    if forwarded is not None:
        authority = forwarded.get("host") or request.headers.get(hdrs.HOST)
        if authority:
            server_host, server_port = _host_and_port(authority, 443 if scheme == "https" else 80)
        if "for" in forwarded:
            client_host = _host_and_port(forwarded["for"], None)[0]
    attributes: dict[str, str | int] = {
        catalog.HTTP_METHOD: method,
        catalog.URL_SCHEME: scheme,
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
    }
    if method == "_OTHER":
        attributes[catalog.HTTP_METHOD_ORIGINAL] = request.method[:32]
    if server_host:
        attributes["server.address"] = server_host
    if server_port:
        attributes["server.port"] = server_port
    if client_host:
        attributes["client.address"] = anonymised_address(client_host)
    if route:
        attributes[catalog.HTTP_ROUTE] = route
        attributes["url.path"] = request.path
    user_agent = request.headers.get(hdrs.USER_AGENT)
    if user_agent:
        attributes["user_agent.original"] = user_agent[:256]
        if synthetic_type(request):
            attributes[catalog.USER_AGENT_SYNTHETIC_TYPE] = catalog.SYNTHETIC_TEST
    return attributes


def synthetic_type(request: web.BaseRequest) -> str | None:
    """`test` for a request of the project's load test (its User-Agent names it), else None."""
    user_agent = request.headers.get(hdrs.USER_AGENT, "")
    return catalog.SYNTHETIC_TEST if catalog.LOADTEST_USER_AGENT in user_agent else None


def server_middleware(
    tracer: trace.Tracer,
    instruments: Instruments,
    untraced: Collection[str] = UNTRACED_PATHS,
    *,
    trust_forwarded: bool = False,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in untraced:
            return await handler(request)
        route = _route(request)
        method = request.method if request.method in _KNOWN_METHODS else "_OTHER"
        name_method = "HTTP" if method == "_OTHER" else method  # semantic conventions: never "_OTHER" in a name
        name = f"{name_method} {route}" if route else name_method
        forwarded = _forwarded(request) if trust_forwarded else None
        scheme = _scheme(request, forwarded)
        parent = _propagator.extract(request.headers)
        start = time.perf_counter()
        status: int = 500
        error_type: str | None = None
        rejection: str | None = None
        outcome = RequestOutcome()
        outcome_token = current_request.set(outcome)
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
                span.set_attributes(_request_attributes(request, method, route, scheme, forwarded))
            try:
                response = await handler(request)
                status = response.status
                rejection = response.get(REJECTION)
                if rejection:
                    rejected = {catalog.REJECTION_REASON: rejection, catalog.HTTP_STATUS: status}
                    auth_failure = response.get(AUTH_FAILURE)
                    if auth_failure:
                        rejected[catalog.AUTH_FAILURE] = auth_failure
                    if traced:
                        span.set_attributes(rejected)
                    instruments.requests_rejected.add(1, rejected)
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception as exc:
                error_type = qualified_type(exc)
                span.record_exception(exc)
                raise
            finally:
                current_request.reset(outcome_token)
                # An invoke the bot does not implement is answered 501 as Bot Framework SDKs answer it: the client
                # asked for something the bot lacks, not a failure of the server (docs/reliability.md).
                failed = status >= 500 and rejection != catalog.REJECT_UNSUPPORTED_INVOKE
                if failed:
                    error_type = error_type or str(status)
                if traced:
                    span.set_attribute(catalog.HTTP_STATUS, status)
                    if failed:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))
                        span.set_attribute(catalog.ERROR_TYPE, error_type or str(status))
                # A turn that raised makes the request failed (its span says so already), though the bot answered.
                error_type = error_type or outcome.error_type
                labels: Labels = (
                    (catalog.HTTP_METHOD, method),
                    (catalog.URL_SCHEME, scheme),
                    (catalog.HTTP_STATUS, status),
                )
                if route:
                    labels += ((catalog.HTTP_ROUTE, route),)
                if error_type:
                    labels += ((catalog.ERROR_TYPE, error_type),)
                synthetic = synthetic_type(request)
                if synthetic:
                    labels += ((catalog.USER_AGENT_SYNTHETIC_TYPE, synthetic),)
                instruments.record_http_server_duration(time.perf_counter() - start, labels)

    return middleware


def _scheme(request: web.Request, forwarded: dict[str, str] | None) -> str:
    scheme = forwarded.get("proto", request.scheme).lower() if forwarded else request.scheme
    return scheme if scheme in ("http", "https") else "http"


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
