"""Publish a command and await its ``Outcome`` on ``reply_to``: the AMQP RPC pattern.

What a publisher in any language does (see ``examples/``): publish the envelope persistent,
``mandatory`` and confirmed, with ``reply_to`` = RabbitMQ's direct reply-to pseudo-queue and
a ``correlation_id``; then read the answer that carries the same ``correlation_id``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from messages import Command
from messages.outcomes import Outcome
from workers.publishing import envelope

#: RabbitMQ's pseudo-queue for answers on the publishing channel (no queue to declare).
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class NoQueue(LookupError):
    """The broker returned the command (``mandatory``): no queue of that name exists."""


def publish_awaiting(
    message: Command, url: str, timeout: float, broker: dramatiq.Broker | None = None
) -> Outcome | None:
    """Publish ``message`` and wait up to ``timeout`` seconds for its outcome (``None``: none
    came in time). With ``broker``, its queue is declared first, as Dramatiq would."""
    wrapped = envelope(message)
    if isinstance(broker, RabbitmqBroker):
        broker.declare_queue(wrapped.queue_name, ensure=True)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return _call(connection.channel(), wrapped, timeout)
    finally:
        connection.close()


def _call(channel: Any, wrapped: dramatiq.Message[Any], timeout: float) -> Outcome | None:
    correlation_id = str(uuid.uuid4())
    answers: list[Outcome] = []

    def on_reply(_ch: Any, _method: Any, properties: Any, body: bytes) -> None:
        if properties.correlation_id == correlation_id:
            answers.append(Outcome.model_validate_json(body))

    channel.basic_consume(DIRECT_REPLY_TO, on_reply, auto_ack=True)
    channel.confirm_delivery()
    properties = pika.BasicProperties(
        delivery_mode=2,
        content_type="application/json",
        reply_to=DIRECT_REPLY_TO,
        correlation_id=correlation_id,
    )
    try:
        channel.basic_publish("", wrapped.queue_name, wrapped.encode(), properties, mandatory=True)
    except pika.exceptions.UnroutableError:
        raise NoQueue(f"no queue {wrapped.queue_name!r}: start a worker first") from None
    deadline = time.monotonic() + timeout
    while not answers and time.monotonic() < deadline:
        channel.connection.process_data_events(time_limit=min(0.2, deadline - time.monotonic()))
    return answers[0] if answers else None
