"""The outbox: send a commit's events to every subscriber, then mark it dispatched; the relay
re-sends commits a crash left undispatched. Consumers are idempotent, so a re-send is harmless."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
import structlog
from pymongo import UpdateOne

from messages import Event, encode
from readstore.eventlog import Commit
from workers.runtime import fanout
from workers.runtime.broker import Rabbitmq, confirmed_together, events_exchange
from workers.write.writebehind import WRITE_BEHIND

if TYPE_CHECKING:
    from workers.write.eventstore import EventStore

log = structlog.get_logger("sagaworks.outbox")

#: (actor, the event types it receives), in subscription order.
SUBSCRIBERS: list[tuple[dramatiq.Actor[Any, Any], tuple[type[Event], ...]]] = []


def subscribe(actor: dramatiq.Actor[Any, Any], event_types: Iterable[type[Event]]) -> None:
    SUBSCRIBERS.append((actor, tuple(event_types)))


def subscribers_of(event: Event) -> list[dramatiq.Actor[Any, Any]]:
    return [actor for actor, types in SUBSCRIBERS if isinstance(event, types)]


def envelope_id(event: Event, actor: dramatiq.Actor[Any, Any]) -> str:
    """The same event to the same subscriber always travels under the same envelope id."""
    return fanout.subscriber_message_id(str(event.message_id), actor.actor_name)


def send(event: Event) -> int:
    """Send ``event`` to every subscriber; the number of publishes it took (0 without any)."""
    actors = subscribers_of(event)
    if not actors:
        return 0
    broker = actors[0].broker
    if not isinstance(broker, Rabbitmq):
        for actor in actors:
            send_event(event, actor)
        return len(actors)
    targets = {actor.queue_name: actor.actor_name for actor in actors}
    exchange = events_exchange()
    message = fanout.shared_envelope(exchange, event.type_name(), encode(event), targets)
    broker.fan_out(message, event.type_name(), list(targets))
    return 1


def send_event(event: Event, actor: dramatiq.Actor[Any, Any]) -> None:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=actor.queue_name,
        actor_name=actor.actor_name,
        args=(encode(event),),
        kwargs={},
        options={},
        message_id=envelope_id(event, actor),
    )
    actor.broker.enqueue(message)


def dispatch(commit: Commit, store: EventStore) -> None:
    """Send every event of ``commit`` to each of its subscribers, then mark it dispatched.

    The mark is written in batches off the command's path, once the publishes are confirmed
    (the write-behind waits for the thread's pending confirms): a crash before the batch is
    written only means the relay sends those events again, which every consumer absorbs.
    """
    for event in commit.events:
        send(event)
    WRITE_BEHIND.add(store.commits, UpdateOne({"_id": commit.id}, {"$set": {"dispatched": True}}))


class Relay:
    """Re-sends commits left undispatched past a grace period (a crash after the commit)."""

    def __init__(self, store: EventStore, grace: timedelta) -> None:
        self.store = store
        self.grace = grace

    def run_once(self) -> int:
        """Dispatch every overdue commit; the number dispatched."""
        WRITE_BEHIND.flush()
        sent = 0
        while batch := self.store.undispatched(self.grace):
            with confirmed_together(dramatiq.get_broker()):  # one confirm wait per batch
                for commit in batch:
                    dispatch(commit, self.store)
            WRITE_BEHIND.flush()
            sent += len(batch)
        if sent:
            log.warning("relay.redispatched", commits=sent)
        return sent

    def run_forever(self, interval: float, stop: threading.Event) -> None:
        log.info("relay.started", grace_seconds=self.grace.total_seconds(), interval=interval)
        while not stop.wait(interval):
            try:
                self.run_once()
            except Exception:
                log.exception("relay.failed")  # keep relaying; the next pass retries
