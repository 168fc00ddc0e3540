"""Events fanned out by RabbitMQ: one publish reaches every subscriber's queue.

An event is published once to the deployment's events exchange (``<prefix>sagaworks.events``,
direct), routing key = its type; each subscriber's queue is bound to it once per event type
it takes. The body is a Dramatiq envelope whose option ``fanout`` names, per subscriber
queue, the actor that consumes it. Dramatiq needs an envelope's ``queue_name`` to be the
queue it was consumed from (it acks through that queue's consumer and re-enqueues retries to
it) and its ``actor_name`` to be that queue's actor, so the consumer of each queue turns the
delivery into exactly the envelope a per-subscriber copy used to be: its own queue and
actor, the message id ``uuid5(event id, actor)``, no ``fanout`` option. Retries, dead letters
and replays then see the per-subscriber envelope; a ``.XQ`` copy of a first delivery still
holds the shared body and is rewritten the same way when it is ingested.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import dramatiq
from dramatiq.errors import DecodeError

EXCHANGE = "sagaworks.events"
OPTION = "fanout"

Delivery = tuple[Any, Any, Any]


def exchange_name(prefix: str) -> str:
    """The events exchange of the deployment whose queues carry ``prefix``."""
    return prefix + EXCHANGE


def subscriber_message_id(event_message_id: str, actor_name: str) -> str:
    """The same event to the same subscriber always travels under the same envelope id."""
    return str(uuid.uuid5(uuid.UUID(event_message_id), actor_name))


def shared_envelope(
    exchange: str, type_name: str, event: dict[str, Any], targets: Mapping[str, str]
) -> dramatiq.Message[Any]:
    """The one envelope published for ``event``; ``targets`` maps queue -> actor."""
    return dramatiq.Message(
        queue_name=exchange,
        actor_name=type_name,
        args=(event,),
        kwargs={},
        options={OPTION: dict(targets)},
        message_id=str(event["message_id"]),
    )


def is_shared(message: dramatiq.Message[Any], exchange: str) -> bool:
    """Whether ``message`` is the shared envelope of an event published to ``exchange``."""
    return message.queue_name == exchange and isinstance(message.options.get(OPTION), dict)


def for_queue(message: dramatiq.Message[Any], queue: str) -> dramatiq.Message[Any] | None:
    """The envelope of ``message`` as ``queue``'s subscriber gets it; ``None`` if not shared."""
    targets = message.options.get(OPTION)
    if not isinstance(targets, dict) or not isinstance(targets.get(queue), str):
        return None
    actor_name = targets[queue]
    options = {k: v for k, v in message.options.items() if k != OPTION}
    return dramatiq.Message(
        queue_name=queue,
        actor_name=actor_name,
        args=message.args,
        kwargs=message.kwargs,
        options=options,
        message_id=subscriber_message_id(message.message_id, actor_name),
        message_timestamp=message.message_timestamp,
    )


def as_delivered(body: bytes, queue: str) -> bytes:
    """``body`` rewritten for ``queue`` if it is a shared envelope; else ``body`` unchanged."""
    try:
        message = dramatiq.Message.decode(body)
        delivered = for_queue(message, queue)
    except (DecodeError, ValueError, TypeError, AttributeError):
        return body  # not ours to judge: Dramatiq (or the dead-letter path) handles it
    return body if delivered is None else delivered.encode()


def delivered(deliveries: Iterator[Delivery], queue: str, exchange: str) -> Iterator[Delivery]:
    """A consumer's deliveries, the ones that came through ``exchange`` rewritten for ``queue``."""
    for method, properties, body in deliveries:
        shared = method is not None and method.exchange == exchange
        yield method, properties, as_delivered(body, queue) if shared else body
