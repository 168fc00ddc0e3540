"""Publishing for upstream services: ``publish(PlaceOrder(...))`` puts it on the right queue.

``publish()`` rides through a broker outage: it retries with backoff, for up to
``SAGAWORKS_PUBLISH_TIMEOUT_SECONDS`` (30 s by default, or its ``timeout`` argument), and a
message counts as published only once RabbitMQ confirmed it (the brokers ``boot()`` makes
use publisher confirms). Past the limit it raises ``BrokerUnavailable``: the message was
not published, and re-publishing it (same message id) is safe.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.errors import BrokerConnectionError

from messages import Command, Event, Message, encode
from messages.errors import SagaworksError
from readstore.consistency import ConsistencyToken, wait_until
from readstore.eventlog import Commit
from workers.runtime.broker import queue_name
from workers.runtime.routing import command_endpoint
from workers.runtime.settings import Settings
from workers.write.eventstore import EventStore
from workers.write.outbox import send

log = structlog.get_logger("sagaworks.publishing")

#: What a publish may fail with while the broker is away (retried until the limit).
OUTAGE_ERRORS = (BrokerConnectionError, pika.exceptions.AMQPError)
FIRST_PAUSE, LONGEST_PAUSE = 0.1, 2.0


class BrokerUnavailable(SagaworksError):
    """RabbitMQ did not take (and confirm) the message within the publisher's limit.

    The message was not published; publishing it again, with the same message id, is safe.
    """


@dataclass(frozen=True)
class Receipt:
    """What was published: the message id and, for a command, the stream it targets."""

    message_id: str
    stream_id: str | None

    def wait(
        self, timeout: float = 10.0, store: EventStore | None = None
    ) -> ConsistencyToken | None:
        """The command's consistency token once it is committed; ``None`` if not in time."""
        if self.stream_id is None:
            return None
        store = store or EventStore()
        found: list[Commit | None] = [None]
        stream_id = self.stream_id

        def committed() -> bool:
            found[0] = store.commit_for(stream_id, self.message_id)
            return found[0] is not None

        wait_until(committed, timeout, first_pause=0.02)
        commit = found[0]
        return ConsistencyToken(commit.stream_id, commit.version) if commit else None


def envelope(message: Command) -> dramatiq.Message[Any]:
    """The Dramatiq envelope of a command; its id is the command's id."""
    endpoint = command_endpoint(message.CONTEXT)
    return dramatiq.Message(
        queue_name=queue_name(endpoint.queue_name),
        actor_name=endpoint.actor_name,
        args=(encode(message),),
        kwargs={},
        options={},
        message_id=str(message.message_id),
    )


def publish(
    message: Message, broker: dramatiq.Broker | None = None, *, timeout: float | None = None
) -> Receipt:
    """Send a command to its context's queue, or an upstream event to its subscribers.

    Waits out a broker outage for up to ``timeout`` seconds (default: the setting
    ``publish_timeout_seconds``), then raises ``BrokerUnavailable``.
    """
    broker = broker or dramatiq.get_broker()
    limit = default_timeout() if timeout is None else timeout
    if isinstance(message, Command):
        enqueue(broker, envelope(message), limit)
        return Receipt(str(message.message_id), message.stream_id())
    if isinstance(message, Event):
        deliver(lambda: send(message), limit)  # one publish, fanned out to the subscribers
        return Receipt(str(message.message_id), None)
    raise TypeError(f"cannot publish {type(message).__name__}")


@functools.cache
def default_timeout() -> float:
    return Settings().publish_timeout_seconds


def enqueue(broker: dramatiq.Broker, message: dramatiq.Message[Any], limit: float) -> None:
    """Enqueue ``message``, retrying with backoff while the broker is unreachable."""
    deliver(lambda: broker.enqueue(message), limit)


def deliver(publish_once: Callable[[], object], limit: float) -> None:
    """Run ``publish_once`` until the broker confirms it, with backoff, for up to ``limit`` s."""
    started = time.monotonic()
    pause = FIRST_PAUSE
    while True:
        try:
            publish_once()
        except OUTAGE_ERRORS as exc:
            waited = time.monotonic() - started
            if waited + pause > limit:
                raise BrokerUnavailable(
                    f"RabbitMQ did not accept the message within {limit:g} s "
                    f"({type(exc).__name__}); it was not published"
                ) from exc
            if pause == FIRST_PAUSE:
                log.warning("publish.waiting", reason=type(exc).__name__, limit_seconds=limit)
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
            continue
        if pause > FIRST_PAUSE:
            log.info("publish.resumed", waited_seconds=round(time.monotonic() - started, 1))
        return
