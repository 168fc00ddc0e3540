"""How a replay sends: on RabbitMQ, a batch and its journal marker in one AMQP transaction.

The journal queue (``sagaworks.replays``) holds one marker per committed batch, naming the
batch's token: after a crash it tells which claimed batches reached the broker. Markers are
consumed (and acked) once their entries are marked replayed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from workers.runtime.broker import REPLAY_JOURNAL, queue_name

#: A batch is not committed when less than this share of its lease is left: a replay that
#: settles after the lease ran out must find the marker of every batch that was committed.
LEASE_MARGIN = 0.25


@dataclass(frozen=True)
class Batch:
    """A committed replay batch as its journal marker names it: its token and entry ids."""

    token: str
    ids: tuple[str, ...]


class LeaseExpired(RuntimeError):
    """The replay's claim ran out before its batch was committed: nothing was sent."""


class Publisher(Protocol):
    def declare(self, queues: Iterable[str]) -> None:
        """Make sure ``queues`` exist (on the calling thread: a broker connects per thread)."""

    def batch(self, messages: list[dramatiq.Message[Any]], batch: Batch, deadline: float) -> None:
        """Send every message of ``batch`` (all or none) before ``deadline``."""

    def journal(self) -> tuple[list[Batch], Callable[[], None]]:
        """The committed batches in the journal, and how to drop them once settled."""


class InProcess:
    """Any other broker (the in-process one): enqueue, nothing can be half-sent."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def declare(self, queues: Iterable[str]) -> None:
        pass  # enqueue declares

    def batch(self, messages: list[dramatiq.Message[Any]], batch: Batch, deadline: float) -> None:
        for message in messages:
            self.broker.enqueue(message)

    def journal(self) -> tuple[list[Batch], Callable[[], None]]:
        return [], lambda: None


class Transactional:
    """RabbitMQ: each batch and its journal marker in one transaction on one channel."""

    def __init__(self, broker: RabbitmqBroker, connection: pika.BlockingConnection) -> None:
        self.broker = broker
        self.journal_queue = queue_name(REPLAY_JOURNAL)
        self.channel = connection.channel()
        self.channel.queue_declare(self.journal_queue, durable=True)
        self.channel.tx_select()
        self.reader = connection.channel()

    def declare(self, queues: Iterable[str]) -> None:
        for queue in queues:
            self.broker.declare_queue(queue, ensure=True)  # a publish to a missing queue is lost

    def batch(self, messages: list[dramatiq.Message[Any]], batch: Batch, deadline: float) -> None:
        persistent = pika.BasicProperties(delivery_mode=2)
        for message in messages:
            self.channel.basic_publish("", message.queue_name, message.encode(), persistent)
        marker = json.dumps({"token": batch.token, "ids": list(batch.ids)})
        self.channel.basic_publish("", self.journal_queue, marker.encode(), persistent)
        if time.monotonic() > deadline:
            self.channel.tx_rollback()
            raise LeaseExpired(f"batch {batch.token}: lease ran out before the commit")
        self.channel.tx_commit()

    def journal(self) -> tuple[list[Batch], Callable[[], None]]:
        batches: list[Batch] = []
        last_tag = 0
        while True:
            method, _, body = self.reader.basic_get(self.journal_queue, auto_ack=False)
            if method is None:
                break
            last_tag = method.delivery_tag
            batches += _marker(body)

        def ack() -> None:
            if last_tag:
                self.reader.basic_ack(last_tag, multiple=True)

        return batches, ack


def _marker(body: bytes) -> list[Batch]:
    """The batch a journal marker names (none if the marker is damaged)."""
    try:
        doc = json.loads(body)
        token, ids = doc["token"], doc["ids"]
    except (ValueError, KeyError, TypeError):
        return []
    if not isinstance(token, str) or not isinstance(ids, list):
        return []
    return [Batch(token, tuple(str(i) for i in ids))]


@contextmanager
def publisher(broker: dramatiq.Broker) -> Iterator[Publisher]:
    """A sender of replay batches for ``broker``."""
    if not isinstance(broker, RabbitmqBroker):
        yield InProcess(broker)
        return
    connection = pika.BlockingConnection(broker.parameters)
    try:
        yield Transactional(broker, connection)
    finally:
        connection.close()
