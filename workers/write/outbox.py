"""The outbox: send a commit's events to every subscriber, then receipt it; the relay re-sends
commits a crash left without a receipt. Consumers are idempotent, so a re-send is harmless.

A commit is never updated once stored. Once a thread's publishes are confirmed, the ids of
the commits they carried are gathered by the write-behind into one receipt per database per
flush (``workers.write.receipts``). The relay examines the commits past its watermark and
past the grace, re-sends those no receipt names, and moves the watermark to the last commit
it examined. A time watermark is safe because the relay is the second line of defence, not
the first: a command message is acked only after its handler returns, that is after its
publishes are confirmed, so a process that dies between its commit and its send leaves the
command to be delivered again, and the duplicate command re-sends the commit's events
(``workers.write.commands``: it re-sends without asking for receipts; consumers drop what
they have seen, by message id). The relay repairs the rest: a receipt lost in a crash after
the send, a command given up on after its commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
import structlog
from pymongo import ASCENDING

from messages import Event, encode
from readstore.db import Document
from readstore.eventlog import Commit
from workers.runtime import fanout
from workers.runtime.broker import Rabbitmq, confirmed_together
from workers.runtime.prefix import events_exchange
from workers.write import receipts
from workers.write.writebehind import WRITE_BEHIND

if TYPE_CHECKING:
    from workers.write.eventstore import EventStore

log = structlog.get_logger("sagaworks.outbox")

#: Told of every commit the relay parks, with the reason (the dead-letter store registers here
#: at boot: the write side does not import it).
PARKED_COMMIT_HOOKS: list[Callable[[Document, str], None]] = []

#: (actor, the event types it receives), in subscription order.
SUBSCRIBERS: list[tuple[dramatiq.Actor[Any, Any], tuple[type[Event], ...]]] = []


def subscribe(actor: dramatiq.Actor[Any, Any], event_types: Iterable[type[Event]]) -> None:
    SUBSCRIBERS.append((actor, tuple(event_types)))


def subscribers_of(event: Event) -> list[dramatiq.Actor[Any, Any]]:
    return [actor for actor, types in SUBSCRIBERS if isinstance(event, types)]


def on_parked_commit(hook: Callable[[Document, str], None]) -> None:
    if hook not in PARKED_COMMIT_HOOKS:
        PARKED_COMMIT_HOOKS.append(hook)


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
    """Send every event of ``commit`` to each of its subscribers, then receipt it.

    The receipt is written off the command's path, once the publishes are confirmed (the
    write-behind waits for the thread's pending confirms), with every other commit sent since
    the last flush: a crash before the flush only means the relay sends those events again,
    which every consumer absorbs.
    """
    for event in commit.events:
        send(event)
    WRITE_BEHIND.gather(receipts.receipts(store.database), commit.id, receipts.receipt)


class Relay:
    """Re-sends commits no receipt names past a grace period (a crash after the commit).

    Each pass examines the commits past the watermark and the grace, in pages, and moves the
    watermark past each page examined (``$max``: relays running side by side send a lost
    commit twice at worst, and never move it back). A commit it cannot decode (a type unknown
    here, a damaged document) is parked: marked ``parked`` on the commit and handed to
    ``PARKED_COMMIT_HOOKS`` (the dead-letter store), so it is visible, and the watermark moves
    past it.
    """

    def __init__(self, store: EventStore, grace: timedelta, batch: int = 500) -> None:
        self.store = store
        self.grace = grace
        self.batch = batch

    def run_once(self) -> int:
        """Dispatch every overdue commit; the number dispatched."""
        WRITE_BEHIND.flush()
        database = self.store.database
        start = mark = receipts.watermark(database)
        cutoff = datetime.now(UTC) - self.grace
        sent = 0
        for page, examined in receipts.past(database, start, cutoff, self.batch):
            if page:
                due = receipts.unreceipted(page, database, page[-1][1] + self.grace)
                sent += self._resend([i for i, _ in due])
            if examined is not None:
                receipts.advance(database, examined)
                mark = max(mark, examined)
        if mark > start:  # an idle pass deletes nothing new
            receipts.forget(database, mark)
        if sent:
            log.warning("relay.redispatched", commits=sent)
        return sent

    def _resend(self, ids: list[str]) -> int:
        if not ids:
            return 0
        docs = self.store.commits.find({"_id": {"$in": ids}}).sort("committed_at", ASCENDING)
        sent = 0
        with confirmed_together(dramatiq.get_broker()):  # one confirm wait per page
            for commit in filter(None, map(self._decoded, docs)):
                dispatch(commit, self.store)
                sent += 1
        WRITE_BEHIND.flush()
        return sent

    def _decoded(self, doc: Document) -> Commit | None:
        try:
            return Commit.from_document(doc)
        except Exception as exc:  # whatever the damage, park it and go on with the rest
            self._park(doc, f"commit {str(doc.get('_id'))[:80]} does not decode: {str(exc)[:400]}")
            return None

    def _park(self, doc: Document, reason: str) -> None:
        parked = {"at": datetime.now(UTC), "reason": reason}
        self.store.commits.update_one({"_id": doc["_id"]}, {"$set": {"parked": parked}})
        log.error("commit.parked", commit_id=str(doc.get("_id"))[:200])
        for hook in PARKED_COMMIT_HOOKS:
            try:
                hook(doc, reason)
            except Exception:  # the commit is parked all the same; status counts it
                log.exception("commit.park_report_failed")

    def run_forever(self, interval: float, stop: threading.Event) -> None:
        log.info("relay.started", grace_seconds=self.grace.total_seconds(), interval=interval)
        while not stop.wait(interval):
            try:
                self.run_once()
            except Exception:
                log.exception("relay.failed")  # keep relaying; the next pass retries
