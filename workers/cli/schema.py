"""``sagaworks schema export``: JSON Schema of every message and the AsyncAPI 3 document."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from messages import Command, registry
from messages.asyncapi import Queue, document
from messages.outcomes import Outcome
from messages.schema import ENVELOPE, all_schemas, model_schema
from workers.cli.output import add_json_flag, emit
from workers.runtime.settings import Settings


def register(subparsers: Any) -> None:
    schema = subparsers.add_parser("schema", help="export message schemas for publishers")
    actions = schema.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export", help="write JSON Schema files and asyncapi.json (AsyncAPI 3)"
    )
    export.add_argument(
        "--out", type=Path, default=Path("schema-out"), help="output folder (default: %(default)s)"
    )
    add_json_flag(export)
    export.set_defaults(func=run_export)


def queues(settings: Settings) -> list[Queue]:
    """Every queue of the service, with the arguments the workers declare it with."""
    from workers.runtime.broker import BASE_QUEUES  # noqa: PLC0415 -- after the actor modules
    from workers.runtime.routing import COMMAND_ENDPOINTS  # noqa: PLC0415
    from workers.write.outbox import SUBSCRIBERS  # noqa: PLC0415

    found = []
    for context, endpoint in COMMAND_ENDPOINTS.items():
        types = tuple(sorted(c.type_name() for c in registry.commands() if context == c.CONTEXT))
        found.append(Queue(endpoint.queue_name, endpoint.actor_name, types))
    for actor, event_types in SUBSCRIBERS:
        types = tuple(sorted(t.type_name() for t in event_types))
        found.append(Queue(BASE_QUEUES[actor.actor_name], actor.actor_name, types, commands=False))
    return [
        Queue(q.name, q.actor, q.types, declared_arguments(q.name, settings), q.commands)
        for q in found
    ]


def declared_arguments(base: str, settings: Settings) -> dict[str, Any]:
    """The arguments a worker declares queue ``base`` with (``{prefix}`` for the prefix)."""
    from workers.runtime.broker import Rabbitmq  # noqa: PLC0415

    broker = Rabbitmq(url="amqp://localhost", quorum=settings.quorum_queues, middleware=[])
    arguments: dict[str, Any] = broker._build_queue_arguments(base)
    return {
        k: "{prefix}" + v if isinstance(v, str) and v.startswith(base) else v
        for k, v in arguments.items()
    }


def asyncapi(settings: Settings | None = None) -> dict[str, Any]:
    from workers.boot import load_actor_modules  # noqa: PLC0415

    load_actor_modules()
    settings = settings or Settings()
    public = {c.type_name() for c in registry.commands() if issubclass(c, Command) and c.PUBLIC}
    return document(queues(settings), public, settings.queue_prefix)


def run_export(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    spec = asyncapi()
    schemas = all_schemas()
    for key, schema in schemas.items():
        _write(out / f"{key}.schema.json", schema)
    _write(out / "envelope.schema.json", ENVELOPE)
    _write(out / "Outcome.schema.json", model_schema(Outcome))
    _write(out / "asyncapi.json", spec)
    result = {"folder": str(out), "schemas": len(schemas), "asyncapi": str(out / "asyncapi.json")}
    emit(args, result, lambda r: f"wrote {r['schemas']} message schemas and {r['asyncapi']}")
    return 0


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")
