"""Publishing for upstream services: ``publish(PlaceOrder(...))`` puts it on the right queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq

from messages import Command, Event, Message, encode
from readstore.consistency import ConsistencyToken, wait_until
from readstore.eventlog import Commit
from workers.runtime.broker import queue_name
from workers.runtime.routing import command_endpoint
from workers.write.eventstore import EventStore
from workers.write.outbox import send


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


def publish(message: Message, broker: dramatiq.Broker | None = None) -> Receipt:
    """Send a command to its context's queue, or an upstream event to its subscribers."""
    broker = broker or dramatiq.get_broker()
    if isinstance(message, Command):
        broker.enqueue(envelope(message))
        return Receipt(str(message.message_id), message.stream_id())
    if isinstance(message, Event):
        send(message)  # one publish, fanned out to the subscribers' queues
        return Receipt(str(message.message_id), None)
    raise TypeError(f"cannot publish {type(message).__name__}")
