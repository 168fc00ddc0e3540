"""The AsyncAPI 3 document of the service: its queues, what each carries, and the replies.

It describes the *service*: it receives commands (and events) on its queues and answers a
command that names a ``reply_to`` with an ``Outcome``. A publisher does the opposite of each
operation. Every payload is the Dramatiq envelope whose one argument is the domain message.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from messages.outcomes import Outcome
from messages.registry import Registry, registry
from messages.schema import ENVELOPE, wire_schema

VERSION = "3.0.0"
BINDING = "0.3.0"
REPLY_TO = "$message.header#/reply_to"


@dataclass(frozen=True)
class Queue:
    """One queue of the service: its base name (before the prefix) and what it carries."""

    name: str
    actor: str
    types: tuple[str, ...]
    #: Queue arguments as declared, ``{prefix}`` standing for the queue prefix.
    arguments: dict[str, Any] = field(default_factory=dict)
    commands: bool = True


def document(queues: list[Queue], public: set[str], prefix: str = "") -> dict[str, Any]:
    """The AsyncAPI 3 document for ``queues``; ``public`` names the commands upstream may send."""
    return {
        "asyncapi": VERSION,
        "info": _info(),
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": _server()},
        "channels": {**{_id(q.name): _channel(q, prefix) for q in queues}, "outcomes": _outcomes()},
        "operations": {f"receive_{_id(q.name)}": _operation(q) for q in queues},
        "components": _components(queues, public),
    }


def _info() -> dict[str, Any]:
    return {
        "title": "sagaworks order service",
        "version": "1.0.0",
        "description": (
            "Commands and events of the order service on RabbitMQ. Each AMQP body is a Dramatiq "
            "envelope whose one argument (args[0]) is the domain message. Publish to the default "
            "exchange ('') with routing key = queue_name = the channel address, persistent "
            "(delivery_mode 2), with publisher confirms and mandatory=true; do not declare the "
            "queues (the workers do). Set reply_to (and correlation_id) on the AMQP properties "
            "to receive the command's Outcome."
        ),
    }


def _server() -> dict[str, Any]:
    return {
        "host": "localhost:5672",
        "protocol": "amqp",
        "protocolVersion": "0.9.1",
        "description": "RabbitMQ (SAGAWORKS_AMQP_URL); the default virtual host '/'.",
    }


def _id(queue: str) -> str:
    return queue.replace(".", "_")


def _channel(queue: Queue, prefix: str) -> dict[str, Any]:
    address = "{prefix}" + queue.name
    kind = "commands, consumed" if queue.commands else "events from the outbox, consumed"
    return {
        "address": address,
        "title": queue.name,
        "description": f"{kind} by actor {queue.actor!r}",
        "parameters": {
            "prefix": {
                "description": "SAGAWORKS_QUEUE_PREFIX of the deployment ('' by default)",
                "default": prefix,
                "examples": [prefix] if prefix else ["", "staging."],
            }
        },
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in queue.types},
        "bindings": {"amqp": _queue_binding(address, queue.arguments)},
    }


def _queue_binding(address: str, arguments: dict[str, Any]) -> dict[str, Any]:
    queue = {"name": address, "durable": True, "exclusive": False, "autoDelete": False}
    return {
        "is": "queue",
        "queue": {**queue, "vhost": "/", "x-arguments": arguments},
        "bindingVersion": BINDING,
    }


def _outcomes() -> dict[str, Any]:
    return {
        "address": None,
        "title": "outcomes",
        "description": "The publisher's own reply queue, named by the command's reply_to "
        "(an exclusive queue, or RabbitMQ's direct reply-to 'amq.rabbitmq.reply-to').",
        "messages": {"Outcome": {"$ref": "#/components/messages/Outcome"}},
    }


def _operation(queue: Queue) -> dict[str, Any]:
    channel = _id(queue.name)
    operation: dict[str, Any] = {
        "action": "receive",
        "title": f"{queue.actor} receives",
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{t}"} for t in queue.types],
        "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": BINDING}},
    }
    if queue.commands:
        operation["reply"] = {
            "address": {"location": REPLY_TO, "description": "the AMQP reply_to property"},
            "channel": {"$ref": "#/channels/outcomes"},
            "messages": [{"$ref": "#/channels/outcomes/messages/Outcome"}],
        }
    return operation


def _components(queues: list[Queue], public: set[str]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Outcome": _hoist(Outcome.model_json_schema(), {})}
    messages: dict[str, Any] = {"Outcome": _outcome_message()}
    for queue in queues:
        for type_name in queue.types:
            if type_name in messages:
                continue
            schemas[type_name] = _hoist(wire_schema(_model(type_name)), schemas)
            schemas[f"{type_name}Envelope"] = _envelope(type_name, queue)
            messages[type_name] = _message(type_name, queue, type_name in public)
    return {
        "schemas": schemas,
        "messages": messages,
        "correlationIds": {"reply": {"location": "$message.header#/correlation_id"}},
    }


def _model(type_name: str, source: Registry = registry) -> Any:
    return source.get(type_name)


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without ``$schema``, its ``$defs`` moved into ``into`` (refs rewritten)."""
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/')
    result: dict[str, Any] = json.loads(text)
    result.pop("$schema", None)
    into.update(result.pop("$defs", {}))
    return result


def _envelope(type_name: str, queue: Queue) -> dict[str, Any]:
    envelope = copy.deepcopy(ENVELOPE)
    props = envelope["properties"]
    if queue.commands:
        props["queue_name"]["pattern"] = "^[A-Za-z0-9._-]*" + queue.name.replace(".", "\\.") + "$"
        props["actor_name"]["const"] = queue.actor
    props["args"]["items"] = {"$ref": f"#/components/schemas/{type_name}"}
    envelope["title"] = f"{type_name}Envelope"
    return envelope


def _message(type_name: str, queue: Queue, public: bool) -> dict[str, Any]:
    audience = "public" if public else ("saga-internal" if queue.commands else "event")
    description = registry.get(type_name).__doc__ or ""
    return {
        "name": type_name,
        "title": type_name,
        "summary": description.strip().splitlines()[0] if description.strip() else type_name,
        "contentType": "application/json",
        "correlationId": {"$ref": "#/components/correlationIds/reply"},
        "payload": {"$ref": f"#/components/schemas/{type_name}Envelope"},
        "tags": [{"name": audience}],
        "bindings": {"amqp": {"messageType": type_name, "bindingVersion": BINDING}},
    }


def _outcome_message() -> dict[str, Any]:
    return {
        "name": "Outcome",
        "title": "Outcome",
        "summary": "What became of a command: committed, duplicate, rejected or dead_lettered.",
        "contentType": "application/json",
        "correlationId": {"$ref": "#/components/correlationIds/reply"},
        "payload": {"$ref": "#/components/schemas/Outcome"},
    }
