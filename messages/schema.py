"""JSON Schema for every message on the wire, for publishers written in other languages."""

from __future__ import annotations

from typing import Any

from messages.base import METADATA_FIELDS, Message
from messages.registry import Registry, registry


def data_schema(message_type: type[Message]) -> dict[str, Any]:
    """The schema of the message's ``data`` object (its domain fields)."""
    schema = message_type.model_json_schema(mode="validation")
    properties = {k: v for k, v in schema.get("properties", {}).items() if k not in METADATA_FIELDS}
    required = [k for k in schema.get("required", []) if k not in METADATA_FIELDS]
    result: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": required,
    }
    if "$defs" in schema:
        result["$defs"] = schema["$defs"]
    return result


def wire_schema(message_type: type[Message]) -> dict[str, Any]:
    """The schema of the whole domain message as it travels (the envelope's one argument)."""
    uuid = {"type": "string", "format": "uuid"}
    data = data_schema(message_type)
    defs = data.pop("$defs", None)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": message_type.type_name(),
        "description": (message_type.__doc__ or "").strip().splitlines()[0]
        if message_type.__doc__
        else "",
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "version", "message_id", "occurred_at", "data"],
        "properties": {
            "type": {"const": message_type.type_name()},
            "version": {"const": message_type.VERSION},
            "message_id": uuid,
            "correlation_id": {**uuid, "description": "equal to message_id for a first message"},
            "causation_id": {"anyOf": [uuid, {"type": "null"}]},
            "occurred_at": {"type": "string", "format": "date-time"},
            "data": data,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema


def all_schemas(source: Registry = registry) -> dict[str, dict[str, Any]]:
    """``{"<Type>.v<N>": schema}`` for every registered message."""
    return {
        f"{name}.v{cls.VERSION}": wire_schema(cls) for name, cls in sorted(source.types().items())
    }
