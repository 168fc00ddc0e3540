"""``sagaworks schema export``: JSON Schema of every message and an AsyncAPI document."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from messages import registry
from messages.schema import all_schemas
from workers.cli.output import add_json_flag, emit

ENVELOPE = {
    "type": "object",
    "description": "Dramatiq's envelope; publish it to exchange '' with routing key = queue_name.",
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
        "message_id": {"type": "string", "format": "uuid"},
        "message_timestamp": {"type": "integer", "description": "milliseconds since the epoch"},
    },
}


def register(subparsers: Any) -> None:
    schema = subparsers.add_parser("schema", help="export message schemas for publishers")
    actions = schema.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write JSON Schema files and asyncapi.json")
    export.add_argument("--out", type=Path, default=Path("schema-out"), help="output folder")
    add_json_flag(export)
    export.set_defaults(func=run_export)


def channels() -> dict[str, Any]:
    """Every queue: what it carries and which actor consumes it."""
    from workers.runtime.routing import COMMAND_ENDPOINTS  # noqa: PLC0415
    from workers.write.outbox import SUBSCRIBERS  # noqa: PLC0415 -- after the actor modules load

    found: dict[str, Any] = {}
    for context, endpoint in COMMAND_ENDPOINTS.items():
        types = sorted(c.type_name() for c in registry.commands() if context == c.CONTEXT)
        found[endpoint.queue_name] = _channel(endpoint.actor_name, types, "publish commands here")
    for actor, event_types in SUBSCRIBERS:
        types = sorted(t.type_name() for t in event_types)
        found[actor.queue_name] = _channel(actor.actor_name, types, "events, sent by the outbox")
    return found


def _channel(actor: str, types: list[str], description: str) -> dict[str, Any]:
    messages = [{"$ref": f"#/components/messages/{_key(t)}"} for t in types]
    return {
        "description": f"{description}; consumed by actor {actor!r}",
        "bindings": {"amqp": {"is": "queue", "queue": {"durable": True}}},
        "subscribe": {"operationId": actor, "message": {"oneOf": messages}},
    }


def _key(type_name: str) -> str:
    return f"{type_name}.v{registry.get(type_name).VERSION}"


def asyncapi() -> dict[str, Any]:
    schemas = all_schemas()
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "sagaworks",
            "version": "1",
            "description": "Commands and events of the order service. Each message body is a "
            "Dramatiq envelope whose single argument is the domain message.",
        },
        "defaultContentType": "application/json",
        "channels": channels(),
        "components": {
            "schemas": {"Envelope": ENVELOPE},
            "messages": {
                key: {"name": key.split(".v")[0], "payload": schema}
                for key, schema in schemas.items()
            },
        },
    }


def run_export(args: argparse.Namespace) -> int:
    from workers.boot import load_actor_modules  # noqa: PLC0415

    load_actor_modules()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    schemas = all_schemas()
    for key, schema in schemas.items():
        (out / f"{key}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    (out / "envelope.schema.json").write_text(json.dumps(ENVELOPE, indent=2) + "\n")
    (out / "asyncapi.json").write_text(json.dumps(asyncapi(), indent=2) + "\n")
    result = {"folder": str(out), "schemas": len(schemas), "asyncapi": str(out / "asyncapi.json")}
    emit(args, result, lambda r: f"wrote {r['schemas']} message schemas and {r['asyncapi']}")
    return 0
