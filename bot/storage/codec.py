"""State items as JSON, for stores outside the process (Azure Blob Storage).

botbuilder keeps objects in state, not only plain values: the dialog stack (`DialogState`, `DialogInstance`), prompt
options holding Activities, choices. botbuilder-azure stores them with jsonpickle, which rebuilds *any* class a stored
document names: whoever can write to the container could make the bot run code. This codec rebuilds only the classes
listed here and refuses everything else with an error naming the type, on write (so a new kind of state shows up in
the first test) and on read.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import botbuilder.schema as schema
from botbuilder.dialogs import DialogInstance, DialogState
from botbuilder.dialogs.choices import Choice, ListStyle
from botbuilder.dialogs.prompts import PromptOptions
from msrest.serialization import Model

TYPE_KEY = "$type"
VALUE_KEY = "$value"

# The Bot Framework schema models (Activity, CardAction, ...) travel in their wire form.
_SCHEMA_MODELS: dict[str, type[Model]] = {
    name: kind
    for name, kind in vars(schema).items()
    if isinstance(kind, type) and issubclass(kind, Model) and kind is not Model
}


class StateCodecError(TypeError):
    """A state item holds a value this codec does not store, or a stored document is not one it wrote."""


def _encode_object(value: object) -> dict[str, Any] | None:
    if isinstance(value, DialogState):
        return {TYPE_KEY: "DialogState", "stack": encode(value.dialog_stack)}
    if isinstance(value, DialogInstance):
        return {TYPE_KEY: "DialogInstance", "id": value.id, "state": encode(value.state)}
    if isinstance(value, PromptOptions):
        return {TYPE_KEY: "PromptOptions", **{name: encode(item) for name, item in vars(value).items()}}
    if isinstance(value, Choice):
        return {TYPE_KEY: "Choice", **{name: encode(item) for name, item in vars(value).items()}}
    if isinstance(value, ListStyle):
        return {TYPE_KEY: "ListStyle", VALUE_KEY: value.value}
    if isinstance(value, datetime.datetime):
        return {TYPE_KEY: "datetime", VALUE_KEY: value.isoformat()}
    kind = type(value)
    if _SCHEMA_MODELS.get(kind.__name__) is kind:
        return {TYPE_KEY: "schema." + kind.__name__, VALUE_KEY: value.serialize()}  # type: ignore[attr-defined]
    return None


def encode(value: Any) -> Any:
    """`value` as JSON-compatible data; StateCodecError for a type not listed in this module."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise StateCodecError(f"state keys must be strings, got {type(key).__name__} {key!r}")
        encoded = {key: encode(item) for key, item in value.items()}
        # A plain dict that happens to have a "$type" key is wrapped, so it cannot pass for an object.
        return {TYPE_KEY: "dict", VALUE_KEY: encoded} if TYPE_KEY in value else encoded
    tagged = _encode_object(value)
    if tagged is None:
        raise StateCodecError(
            f"cannot keep a {type(value).__module__}.{type(value).__qualname__} in blob state: "
            "store plain values (dict, list, str, numbers) or add the type to bot/storage/codec.py"
        )
    return tagged


def _fields(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: decode(data.get(name)) for name in names}


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": lambda data: {key: decode(item) for key, item in data[VALUE_KEY].items()},
    "DialogState": lambda data: DialogState(decode(data["stack"])),
    "DialogInstance": lambda data: DialogInstance(id=data["id"], state=decode(data["state"])),
    "PromptOptions": lambda data: PromptOptions(
        **_fields(data, "prompt", "retry_prompt", "choices", "style", "validations", "number_of_attempts")
    ),
    "Choice": lambda data: Choice(**_fields(data, "value", "action", "synonyms")),
    "ListStyle": lambda data: ListStyle(data[VALUE_KEY]),
    "datetime": lambda data: datetime.datetime.fromisoformat(data[VALUE_KEY]),
}


def decode(data: Any) -> Any:
    """The inverse of `encode`; StateCodecError for a document naming a type this module does not rebuild."""
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TYPE_KEY)
    if tag is None:
        return {key: decode(item) for key, item in data.items()}
    if isinstance(tag, str) and tag.startswith("schema.") and tag[7:] in _SCHEMA_MODELS:
        return _SCHEMA_MODELS[tag[7:]].deserialize(data[VALUE_KEY])
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise StateCodecError(f"stored state names an unknown type {str(tag)[:80]!r}")
    try:
        return decoder(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StateCodecError(f"stored state has a malformed {tag}: {error}") from None


def dumps(item: Any) -> bytes:
    return json.dumps(encode(item), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def loads(raw: bytes) -> Any:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise StateCodecError(f"stored state is not JSON: {error}") from None
    return decode(document)
