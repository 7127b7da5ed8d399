"""The parts of an envelope built from attributes: the resource's tags, custom dimensions and measurements, user
tags, a request's URL and status code, as the SDK's conversion makes them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from azure.monitor.opentelemetry.exporter import _utils as sdk_utils
from azure.monitor.opentelemetry.exporter._constants import _GEN_AI_ATTRIBUTES, _MICROSOFT_CUSTOM_MEASUREMENTS
from opentelemetry.sdk.resources import Resource

from telemetry import catalog
from telemetry.azure_export.envelope import plain_key

_PROPERTY_MAX = 8 * 1024
_GEN_AI_PROPERTY_MAX = 256 * 1024
# Correlation carried in attributes and sent as tags or sampleRate, never as custom dimensions.
_CORRELATION_ATTRIBUTES = frozenset({catalog.OPERATION_NAME, catalog.SAMPLE_RATE})


class ResourceTags:
    """Tags every envelope of one resource starts with (SDK context, then cloud role and instance), built once."""

    def __init__(self) -> None:
        self._resource: Resource | None = None
        self._tags: dict[str, Any] = {}

    def __call__(self, resource: Resource | None) -> dict[str, Any]:
        if resource is not self._resource or not self._tags:
            tags = {plain_key(key): value for key, value in sdk_utils.azure_monitor_context.items()}
            part_a = sdk_utils._populate_part_a_fields(resource) if resource is not None else {}
            tags.update((plain_key(key), value) for key, value in part_a.items())
            self._resource, self._tags = resource, tags
        return self._tags


class Properties:
    """Custom dimensions as the SDK's `_filter_custom_properties` makes them: string values, cut at 8 KiB (256 KiB
    for GenAI content), keys up to 150 characters, `excluded` keys left out. What to do with a key is learnt
    once: attribute keys repeat, and the SDK's test of a key is a scan of prefixes."""

    def __init__(self, excluded: Callable[[str], bool]) -> None:
        self._excluded = excluded
        self._limits: dict[str, int] = {}  # 0: not a custom dimension

    def __call__(self, attributes: Mapping[str, Any]) -> dict[str, str]:
        properties: dict[str, str] = {}
        limits = self._limits
        for key, value in attributes.items():
            limit = limits.get(key)
            if limit is None:
                limit = self._learn(key)
            if limit and value is not None:
                properties[key] = value[:limit] if type(value) is str else str(value)[:limit]
        return properties

    def _learn(self, key: str) -> int:
        if len(self._limits) >= 4096:  # attribute keys are few; bounded all the same
            self._limits.clear()
        if self._excluded(key) or not key or len(key) > 150:
            limit = 0
        else:
            limit = _GEN_AI_PROPERTY_MAX if key in _GEN_AI_ATTRIBUTES else _PROPERTY_MAX
        self._limits[key] = limit
        return limit


def custom_measurements(attributes: Mapping[str, Any] | None) -> dict[str, float]:
    if not attributes or _MICROSOFT_CUSTOM_MEASUREMENTS not in attributes:
        return {}
    return sdk_utils._filter_custom_measurements(attributes)


def status_code(attributes: Mapping[str, Any]) -> int:
    code = attributes.get("http.response.status_code") or attributes.get("http.status_code")
    if not code:
        return 0
    try:
        return int(code)
    except ValueError:
        return 0


def user_tags(tags: dict[str, Any], attributes: Mapping[str, Any] | None) -> None:
    if attributes:
        if "enduser.id" in attributes:
            tags["ai.user.authUserId"] = attributes["enduser.id"]
        if "enduser.pseudo.id" in attributes:
            tags["ai.user.id"] = attributes["enduser.pseudo.id"]


_DEFAULT_PORTS = {"http": 80, "https": 443}


def request_url(attributes: Mapping[str, Any]) -> str | None:
    """The request's URL from the current conventions' parts, an IPv6 host in brackets and a default port left out
    (the SDK writes `https://2001:db8::1:8443/...`); None when a part is missing (the SDK's rules then apply)."""
    scheme, host, path = attributes.get("url.scheme"), attributes.get("server.address"), attributes.get("url.path")
    if not (scheme and host and path) or "url.full" in attributes:
        return None
    authority = f"[{host}]" if ":" in str(host) else str(host)
    port = attributes.get("server.port")
    if port and port != _DEFAULT_PORTS.get(str(scheme)):
        authority = f"{authority}:{port}"
    query = attributes.get("url.query")
    return f"{scheme}://{authority}{path}" + (f"?{query}" if query else "")


def excluding_correlation(excluded: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda key: key in _CORRELATION_ATTRIBUTES or excluded(key)
