"""JSON Schema for every message on the wire, generated from the very models the worker uses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from messages.base import METADATA_FIELDS, Message
from messages.registry import Registry, registry
from messages.types import UUID_PATTERN

DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: The top-level keys every wire document carries (``correlation_id`` may be null or absent).
WIRE_REQUIRED = ["type", "version", "message_id", "occurred_at", "data"]
UUID_TEXT = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}

#: Dramatiq's envelope: the body of every AMQP message. Its one argument is the domain message.
ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "Dramatiq's envelope: the AMQP body. Publish it to exchange '' with "
    "routing key = queue_name; its one argument (args[0]) is the domain message.",
    "required": [
        "queue_name",
        "actor_name",
        "args",
        "kwargs",
        "options",
        "message_id",
        "message_timestamp",
    ],
    "properties": {
        "queue_name": {"type": "string", "description": "must equal the routing key"},
        "actor_name": {"type": "string"},
        "args": {"type": "array", "minItems": 1, "maxItems": 1},
        "kwargs": {"type": "object", "maxProperties": 0},
        "options": {"type": "object"},
        "message_id": {**UUID_TEXT, "description": "equal to the domain message's message_id"},
        "message_timestamp": {"type": "integer", "description": "milliseconds since the epoch"},
    },
}


def _description(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def data_schema(message_type: type[Message]) -> dict[str, Any]:
    """The schema of the message's ``data`` object (its domain fields)."""
    schema = message_type.model_json_schema(mode="validation")
    properties = {k: v for k, v in schema.get("properties", {}).items() if k not in METADATA_FIELDS}
    required = [k for k in schema.get("required", []) if k not in METADATA_FIELDS]
    result: dict[str, Any] = {
        "title": f"{message_type.type_name()}Data",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": required,
    }
    if "$defs" in schema:
        result["$defs"] = schema["$defs"]
    return result


def _metadata(message_type: type[Message]) -> dict[str, Any]:
    """The metadata properties, as the model declares them (the same wire types)."""
    properties = message_type.model_json_schema(mode="validation")["properties"]
    found = {k: dict(properties[k]) for k in sorted(METADATA_FIELDS) if k in properties}
    for prop in found.values():
        prop.pop("default", None)  # on the wire the publisher sends them; no default applies
    found["correlation_id"]["description"] = "equal to message_id for a first message"
    found["message_id"]["description"] = "the idempotency key: a re-send keeps it"
    return found


def wire_schema(message_type: type[Message]) -> dict[str, Any]:
    """The schema of the whole domain message as it travels (the envelope's one argument)."""
    data = data_schema(message_type)
    defs = data.pop("$defs", None)
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "title": message_type.type_name(),
        "description": _description(message_type),
        "type": "object",
        "additionalProperties": False,
        "required": list(WIRE_REQUIRED),
        "properties": {
            "type": {"const": message_type.type_name()},
            "version": {"const": message_type.VERSION},
            **_metadata(message_type),
            "data": data,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A plain model's schema (e.g. the reply ``Outcome``), standalone."""
    return {"$schema": DRAFT, **model.model_json_schema(mode="validation")}


def all_schemas(source: Registry = registry) -> dict[str, dict[str, Any]]:
    """``{"<Type>.v<N>": schema}`` for every registered message."""
    return {
        f"{name}.v{cls.VERSION}": wire_schema(cls) for name, cls in sorted(source.types().items())
    }
