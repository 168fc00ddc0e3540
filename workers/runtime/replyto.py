"""The AMQP ``reply_to`` of a delivered command, carried into its envelope's options.

Dramatiq's RabbitMQ consumer reads the AMQP properties of each delivery and drops them; its
envelope has only its own fields. ``carry_reply_to`` wraps a consumer's delivery iterator
so that a delivery's ``reply_to`` and ``correlation_id`` properties are written into the
envelope's ``options`` before Dramatiq decodes it. Options travel with the message: a retry
(re-enqueued without properties), a delay or a replay still knows where to answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

#: Envelope options naming where the outcome goes, and the id it answers to.
REPLY_TO = "reply_to"
REPLY_CORRELATION = "reply_correlation_id"

Delivery = tuple[Any, Any, Any]


def carry_reply_to(consumer: Any) -> Any:
    """``consumer`` (Dramatiq's RabbitMQ consumer), its deliveries' ``reply_to`` carried along."""
    consumer.iterator = _carrying(consumer.iterator)
    return consumer


def _carrying(deliveries: Iterator[Delivery]) -> Iterator[Delivery]:
    for method, properties, body in deliveries:
        reply_to = getattr(properties, "reply_to", None)
        if not reply_to:
            yield method, properties, body
            continue
        correlation_id = getattr(properties, "correlation_id", None)
        yield method, properties, with_reply_to(body, reply_to, correlation_id)


def with_reply_to(body: bytes, reply_to: str, correlation_id: str | None) -> bytes:
    """The envelope ``body`` with the reply options set; an unreadable body is left as it is
    (Dramatiq dead-letters it)."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return body
    if not isinstance(envelope, dict) or not isinstance(envelope.get("options", {}), dict):
        return body
    options = envelope.setdefault("options", {})
    options[REPLY_TO] = reply_to
    if correlation_id:
        options[REPLY_CORRELATION] = correlation_id
    return json.dumps(envelope, separators=(",", ":")).encode()
