"""Speed rewrite: botbuilder's schema models converted to and from JSON without msrest's generic (de)serialiser.

Why: msrest rebuilds its class map and walks every attribute through several layers of dispatch for each activity;
parsing the request and serialising the replies were a large share of a turn (figures: docs/performance.md). The
codec converts botbuilder's schema models with a per-class plan built once; whatever it is not sure to convert exactly
as msrest would (wrong types, unusual shapes) goes to msrest itself. Timestamps of the usual shape are parsed with
`datetime` instead of isodate. `FastTurnResults` serialises the replies of an expectReplies turn with it.
Tests proving it equals the library and is used:
- tests/test_compat.py::test_the_codec_deserialises_and_serialises_exactly_as_msrest
- tests/test_compat.py::test_timestamps_parse_exactly_as_msrest_parses_them
- tests/test_compat.py::test_parsing_and_answering_an_activity_do_not_go_through_msrest

A single module of ~200 lines on purpose: the plan, the decoder and the encoder mirror each other and are read
together.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from http import HTTPStatus
from typing import Any, TypeVar

import isodate
from botbuilder.core import CloudAdapterBase, InvokeResponse, TurnContext
from botbuilder.schema import DeliveryModes, ExpectedReplies
from msrest.serialization import Deserializer, Model, Serializer

_T = TypeVar("_T")


class _NotFast(Exception):
    """The codec met something it does not convert itself; msrest converts the whole value instead."""


_MISSING = object()
_STR, _BOOL, _INT, _ISO, _OBJECT, _MODEL, _MODEL_LIST, _STR_LIST, _MODEL_DICT = range(9)
_BASIC_KINDS = {"str": _STR, "bool": _BOOL, "int": _INT, "iso-8601": _ISO, "object": _OBJECT, "[str]": _STR_LIST}


# An activity's timestamps as channels write them (two per request): msrest parses them with isodate, more slowly.
_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:(Z)|([+-])(\d\d):(\d\d))\Z")


def parse_timestamp(text: str) -> datetime | None:
    """`Deserializer.deserialize_iso(text)` for the common shape (the same value, with isodate's time zone objects),
    or None for anything else: other shapes, out-of-range fields, and years at the edges msrest checks."""
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, zone_hours, zone_minutes = match.groups()
    if not 1 < int(year) < 9999:
        return None
    if zulu:
        zone: Any = isodate.UTC
    else:
        direction = -1 if sign == "-" else 1
        zone = isodate.FixedOffset(direction * int(zone_hours), direction * int(zone_minutes), text[-6:])
    microseconds = int(fraction.ljust(6, "0")) if fraction else 0
    try:
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microseconds, zone)
        parsed.utctimetuple()  # msrest's check: the offset and the instant in UTC must be valid
    except (ValueError, OverflowError):
        return None
    return parsed


class _Plan:
    """How one schema class maps to JSON: (attribute, JSON key, kind, model class) for each field, in msrest's
    order, and the JSON keys msrest knows (any other key of a request ends up in `additional_properties`)."""

    def __init__(self, fields: tuple[tuple[str, str, int, type[Model] | None], ...]) -> None:
        self.fields = fields
        self.known_keys = frozenset(key for _, key, _, _ in fields)


class SchemaCodec:
    """Converts botbuilder schema models (msrest `Model`s: Activity, ExpectedReplies, ...) to and from JSON values
    exactly as msrest does, for the shapes where that is certain, and hands anything else to msrest."""

    def __init__(self) -> None:
        self._plans: dict[type, _Plan | None] = {}
        self._msrest_deserializers: dict[type, Deserializer] = {}
        self._msrest_serializers: dict[type, Serializer] = {}

    def deserialize(self, model: type[_T], data: Any) -> _T:
        """`model().deserialize(data)`, the same result (msrest's own errors for what it refuses)."""
        try:
            return self._from_json(model, data)  # type: ignore[return-value]
        except _NotFast:
            return model().deserialize(data)  # type: ignore[attr-defined]

    def serialize(self, value: Model) -> Any:
        """`value.serialize()`, the same JSON value (msrest's own errors for what it cannot serialise)."""
        try:
            return self._to_json(value)
        except _NotFast:
            return value.serialize()

    def _plan(self, model: type) -> _Plan:
        if model not in self._plans:
            self._plans[model] = self._build_plan(model)
        plan = self._plans[model]
        if plan is None:
            raise _NotFast(model.__name__)
        return plan

    def _build_plan(self, model: type) -> _Plan | None:
        if not (isinstance(model, type) and issubclass(model, Model)):
            return None
        if model.__dict__.get("_subtype_map") or getattr(model, "_validation", None) or model.is_xml_model():
            return None
        dependencies = model._infer_class_models()
        fields: list[tuple[str, str, int, type[Model] | None]] = []
        for attr, description in model._attribute_map.items():
            key, data_type = description["key"], description["type"]
            if not key or "." in key or "\\" in key or description.get("flatten") or attr == "additional_properties":
                return None
            if data_type in _BASIC_KINDS:
                fields.append((attr, key, _BASIC_KINDS[data_type], None))
                continue
            inner = data_type.strip("[]{}")
            target = dependencies.get(inner)
            if not (isinstance(target, type) and issubclass(target, Model)) or issubclass(target, Enum):
                return None
            if data_type == inner:
                fields.append((attr, key, _MODEL, target))
            elif data_type == f"[{inner}]":
                fields.append((attr, key, _MODEL_LIST, target))
            elif data_type == f"{{{inner}}}":
                fields.append((attr, key, _MODEL_DICT, target))
            else:
                return None
        self._msrest_deserializers[model] = Deserializer(dependencies)
        self._msrest_serializers[model] = Serializer(dependencies)
        return _Plan(tuple(fields))

    # -- JSON -> model

    def _from_json(self, model: type, data: Any) -> Model:
        if type(data) is not dict:
            raise _NotFast(type(data).__name__)
        plan = self._plan(model)
        values: dict[str, Any] = {}
        for attr, key, kind, target in plan.fields:
            value = data.get(key)
            values[attr] = None if value is None else self._decode(model, kind, target, value)
        try:
            result = model(**values)
        except Exception as error:
            raise _NotFast(model.__name__) from error
        if not plan.known_keys.issuperset(data):
            result.additional_properties = {key: data[key] for key in data.keys() - plan.known_keys}
        return result

    def _decode(self, model: type, kind: int, target: type | None, value: Any) -> Any:
        kind_of_value = type(value)
        if kind == _STR and kind_of_value is str:
            return value
        if (kind == _BOOL and kind_of_value is bool) or (kind == _INT and kind_of_value is int):
            return value
        if kind == _MODEL and kind_of_value is dict:
            return self._from_json(target, value)  # type: ignore[arg-type]
        if kind == _MODEL_LIST and kind_of_value is list:
            return [None if item is None else self._from_json(target, item) for item in value]  # type: ignore[arg-type]
        if kind == _STR_LIST and kind_of_value is list and all(item is None or type(item) is str for item in value):
            return list(value)
        if kind == _MODEL_DICT and kind_of_value is dict:
            return {
                name: None if item is None else self._from_json(target, item)  # type: ignore[arg-type]
                for name, item in value.items()
            }
        try:
            if kind == _ISO and kind_of_value is str:
                return parse_timestamp(value) or Deserializer.deserialize_iso(value)
            if kind == _OBJECT:
                return self._msrest_deserializers[model].deserialize_object(value)
        except Exception as error:
            raise _NotFast(kind_of_value.__name__) from error
        raise _NotFast(kind_of_value.__name__)

    # -- model -> JSON

    def _to_json(self, value: Any) -> dict[str, Any]:
        model = type(value)
        plan = self._plan(model)
        result: dict[str, Any] = {}
        for attr, key, kind, _ in plan.fields:
            item = getattr(value, attr, _MISSING)
            if item is _MISSING:
                raise _NotFast(attr)
            if item is not None:
                result[key] = self._encode(model, kind, item)
        return result

    def _encode(self, model: type, kind: int, value: Any) -> Any:
        kind_of_value = type(value)
        if kind == _STR:
            if kind_of_value is str:
                return value
            if isinstance(value, Enum):
                return value.value
        elif (kind == _BOOL and kind_of_value is bool) or (kind == _INT and kind_of_value is int):
            return value
        elif kind == _MODEL and isinstance(value, Model):
            return self._to_json(value)
        elif kind == _MODEL_LIST and kind_of_value in (list, tuple):
            return [None if item is None else self._encode(model, _MODEL, item) for item in value]
        elif kind == _STR_LIST and kind_of_value in (list, tuple):
            return [None if item is None else self._encode(model, _STR, item) for item in value]
        elif kind == _MODEL_DICT and kind_of_value is dict and all(type(name) is str for name in value):
            return {name: None if item is None else self._encode(model, _MODEL, item) for name, item in value.items()}
        else:
            try:
                if kind == _ISO:
                    return Serializer.serialize_iso(value)
                if kind == _OBJECT:
                    return self._msrest_serializers[model].serialize_object(value, keep_readonly=False, is_xml=False)
            except Exception as error:
                raise _NotFast(kind_of_value.__name__) from error
        raise _NotFast(kind_of_value.__name__)


SCHEMA_CODEC = SchemaCodec()


class FastTurnResults(CloudAdapterBase):
    """Serialises the replies of an expectReplies turn with the codec (botbuilder does it with msrest)."""

    def _process_turn_results(self, context: TurnContext) -> InvokeResponse:
        if context.activity.delivery_mode == DeliveryModes.expect_replies:
            replies = ExpectedReplies(activities=context.buffered_reply_activities)
            return InvokeResponse(status=HTTPStatus.OK, body=SCHEMA_CODEC.serialize(replies))
        return super()._process_turn_results(context)
