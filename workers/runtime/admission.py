"""Who may send what where: a message type must belong to the queue it arrived on, by its route.

Upstream services publish through the upstream exchange (``UPSTREAM_EXCHANGE``), which routes
to the command queues only; the service's own publishers (workers, sagas, the outbox, replay)
use RabbitMQ's default exchange, which the definitions file lets only the service's user write
to. The exchange a delivery came through is stamped by the broker, so it cannot be forged by
the publisher: it is the proof that a message is internal.

- A command queue takes commands of its own context; an event there is refused.
- An internal command (sent by the fulfilment saga) is refused from the upstream exchange.
- Saga and projection queues take nothing from the upstream exchange.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messages import Command, Event
from messages.registry import UnknownMessageType, registry
from workers.runtime.envelopes import UNAUTHORIZED, Refused, refuse
from workers.runtime.routing import COMMAND_ENDPOINTS

#: The exchange upstream services publish to (routing key = the command queue's name).
UPSTREAM_EXCHANGE = "sagaworks.upstream"
#: Commands only the service sends (the fulfilment saga's steps); refused from upstream.
INTERNAL_COMMANDS = frozenset(
    {"ReserveStock", "ReleaseStock", "CommitStock", "ChargePayment", "RefundPayment"}
)
#: The command queues (unprefixed) and the context each serves.
COMMAND_QUEUES = {endpoint.queue_name: context for context, endpoint in COMMAND_ENDPOINTS.items()}


def upstream_exchange(prefix: str) -> str:
    return prefix + UPSTREAM_EXCHANGE


def admit(base_queue: str, envelope: Mapping[str, Any], trusted: bool) -> None:
    """Raise ``Refused`` unless the envelope's message may arrive on ``base_queue`` this way."""
    context = COMMAND_QUEUES.get(base_queue)
    if context is None:
        if not trusted:
            raise _unauthorized("route", f"{base_queue} takes no message from upstream")
        return
    model = message_model(envelope)
    if model is None:
        return  # not a known message: the actor refuses it with the decoding error
    name = model.type_name()
    if issubclass(model, Event):
        raise _unauthorized("args.0.type", f"{name} is an event; {base_queue} takes commands")
    if issubclass(model, Command) and context != model.CONTEXT:
        raise _unauthorized("args.0.type", f"{name} is not a command of {base_queue}")
    if name in INTERNAL_COMMANDS and not trusted:
        raise _unauthorized("args.0.type", f"{name} is internal; refused from upstream")


def message_model(envelope: Mapping[str, Any]) -> type[Any] | None:
    """The registered model of the envelope's single message, if it names one."""
    args = envelope.get("args")
    message = args[0] if isinstance(args, list) and len(args) == 1 else None
    type_name = message.get("type") if isinstance(message, dict) else None
    if not isinstance(type_name, str):
        return None
    try:
        return registry.get(type_name)
    except UnknownMessageType:
        return None


def _unauthorized(field: str, reason: str) -> Refused:
    return refuse(field, reason, UNAUTHORIZED)
