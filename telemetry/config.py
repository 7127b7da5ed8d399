"""Telemetry settings read from the environment, validated with messages that name the bad variable."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from urllib.parse import unquote, urlsplit

# The parsers are shared with the bot's settings; ConfigError is re-exported for telemetry's callers.
from bot.envparse import ConfigError, parse_bool, parse_number

DEFAULT_SERVICE_NAME = "otel-chatbot"
DEFAULT_ENVIRONMENT = "development"

# The Azure Monitor distro's names for its samplers, accepted in OTEL_TRACES_SAMPLER with the same arguments.
RATE_LIMITED_SAMPLER = "microsoft.rate_limited"  # argument: traces per second
FIXED_PERCENTAGE_SAMPLER = "microsoft.fixed_percentage"  # argument: ratio 0..1, like traceidratio
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    RATE_LIMITED_SAMPLER,
    FIXED_PERCENTAGE_SAMPLER,
)
# Every turn is traced up to this rate; beyond it the share traced adapts so that tracing costs no more than this.
DEFAULT_SAMPLER = RATE_LIMITED_SAMPLER
DEFAULT_TRACES_PER_SECOND = 100.0


def parse_url(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"expected an http(s) URL, got {raw!r}")
    return raw


def parse_resource_attributes(raw: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: comma-separated key=value pairs (values may be percent-encoded)."""

    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("OTEL_RESOURCE_ATTRIBUTES", f"expected key=value pairs separated by commas, got {item!r}")
        result[key.strip()] = unquote(value.strip())
    return result


# The keys Azure Monitor's connection strings have, by their lower-case form (the SDK reads keys case-insensitively).
CONNECTION_STRING_KEYS = {
    key.lower(): key
    for key in (
        "InstrumentationKey",
        "IngestionEndpoint",
        "LiveEndpoint",
        "AADAudience",
        "ApplicationId",
        "EndpointSuffix",
        "Location",
        "Authorization",
    )
}
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def parse_connection_string(raw: str) -> dict[str, str]:
    """APPLICATIONINSIGHTS_CONNECTION_STRING: `Key=Value;Key=Value`, with an InstrumentationKey (a GUID).

    Stricter than the SDK on purpose: the SDK ignores a key it does not know, or one with a space before `=`, and then
    sends everything to Microsoft's default public endpoint instead of the one the operator meant."""
    variable = "APPLICATIONINSIGHTS_CONNECTION_STRING"
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(variable, f"expected Key=Value pairs separated by ';', got {item!r}")
        if key.strip().lower() not in CONNECTION_STRING_KEYS:
            known = ", ".join(CONNECTION_STRING_KEYS.values())
            raise ConfigError(variable, f"unknown key {key.strip()!r}; the keys are {known}")
        pairs[key.strip().lower()] = value.strip()
    instrumentation_key = pairs.get("instrumentationkey")
    if not instrumentation_key:
        raise ConfigError(variable, "has no InstrumentationKey")
    if not _GUID.fullmatch(instrumentation_key.lower()):
        raise ConfigError(variable, "InstrumentationKey is not a GUID (copy the connection string from the portal)")
    for key in ("ingestionendpoint", "liveendpoint"):
        if key in pairs and (urlsplit(pairs[key]).scheme not in ("http", "https") or not urlsplit(pairs[key]).hostname):
            raise ConfigError(variable, f"{CONNECTION_STRING_KEYS[key]} is not an http(s) URL")
    return pairs


def normalised_connection_string(raw: str) -> str:
    """The connection string as the SDK parses it reliably: known keys, no spaces around `=` or `;`."""
    return ";".join(f"{CONNECTION_STRING_KEYS[key]}={value}" for key, value in parse_connection_string(raw).items())


def parse_authentication_string(raw: str) -> str | None:
    """APPLICATIONINSIGHTS_AUTHENTICATION_STRING: `Authorization=AAD` (system-assigned identity) or
    `Authorization=AAD;ClientId=<guid>` (user-assigned). Returns the client id, "" for system-assigned."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        key, _, value = item.partition("=")
        pairs[key.strip().lower()] = value.strip()
    if pairs.get("authorization", "").upper() != "AAD":
        raise ConfigError("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "expected Authorization=AAD[;ClientId=<guid>]")
    return pairs.get("clientid", "")


def _package_version() -> str:
    try:
        return metadata.version("otel-chatbot")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class TelemetryConfig:
    service_name: str = DEFAULT_SERVICE_NAME
    service_version: str = field(default_factory=_package_version)
    service_instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    environment: str = DEFAULT_ENVIRONMENT
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    connection_string: str | None = None
    otlp_endpoint: str | None = None
    sampler: str = DEFAULT_SAMPLER
    sampler_ratio: float = DEFAULT_TRACES_PER_SECOND  # a ratio, or traces per second for the rate-limited sampler
    log_personal_information: bool = False
    hash_key: bytes | None = None
    log_level: int = logging.INFO
    storage_directory: str | None = None
    storage_retry_seconds: float = 10.0
    entra_client_id: str | None = None  # None: connection-string ingestion; "" or a client id: Entra ID tokens
    trust_forwarded_headers: bool = False  # behind a proxy that sets Forwarded / X-Forwarded-* (App Service does)
    prometheus_exemplars: bool = False  # trace ids on histogram buckets (OpenMetrics); costs every measurement

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        env = os.environ if environ is None else environ
        attributes = parse_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        service_name = (
            env.get("OTEL_SERVICE_NAME", "").strip() or attributes.get("service.name") or DEFAULT_SERVICE_NAME
        )
        environment = (
            attributes.get("deployment.environment.name")
            or attributes.get("deployment.environment")
            or DEFAULT_ENVIRONMENT
        )
        connection_string = env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip() or None
        if connection_string:
            connection_string = normalised_connection_string(connection_string)
        sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or DEFAULT_SAMPLER
        if sampler not in SAMPLERS:
            raise ConfigError("OTEL_TRACES_SAMPLER", f"expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if sampler == RATE_LIMITED_SAMPLER:
            ratio = parse_number(env, "OTEL_TRACES_SAMPLER_ARG", DEFAULT_TRACES_PER_SECOND, 0.0, 1e6)
        else:
            ratio = parse_number(env, "OTEL_TRACES_SAMPLER_ARG", 1.0, 0.0, 1.0)
        level_name = env.get("BOT_LOG_LEVEL", "").strip().upper() or "INFO"
        level = logging.getLevelName(level_name)
        if not isinstance(level, int):
            raise ConfigError("BOT_LOG_LEVEL", f"expected DEBUG, INFO, WARNING or ERROR, got {level_name!r}")
        hash_key = env.get("BOT_TELEMETRY_HASH_KEY", "").strip()
        authentication = env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").strip()
        defaults = cls()
        return cls(
            service_name=service_name,
            service_instance_id=attributes.get("service.instance.id") or defaults.service_instance_id,
            environment=environment,
            resource_attributes=attributes,
            connection_string=connection_string,
            otlp_endpoint=parse_url(env, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            sampler=sampler,
            sampler_ratio=ratio,
            log_personal_information=parse_bool(env, "BOT_LOG_PERSONAL_INFORMATION", False),
            hash_key=hash_key.encode() if hash_key else None,
            log_level=level,
            storage_directory=env.get("BOT_TELEMETRY_STORAGE_DIRECTORY", "").strip() or None,
            storage_retry_seconds=parse_number(env, "BOT_TELEMETRY_RETRY_INTERVAL_SECONDS", 10.0, 1.0, 3600.0),
            entra_client_id=parse_authentication_string(authentication) if authentication else None,
            trust_forwarded_headers=parse_bool(env, "BOT_TRUST_FORWARDED_HEADERS", False),
            prometheus_exemplars=parse_bool(env, "BOT_PROMETHEUS_EXEMPLARS", False),
        )
