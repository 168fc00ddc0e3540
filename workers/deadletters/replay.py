"""Replay: dead letters back to their original queue, fresh retry count, same message id, audited.

The entry is marked replayed (who, when) *before* its message is sent, so a replay that
fails again at once is recorded after it and the entry ends up dead again, not replayed. On
RabbitMQ a batch is published in one AMQP transaction: the commit returns once the broker has
every message of it (or none, and the entries are marked dead again).
Keeping the message id keeps every consumer's idempotency: a replay applies once in effect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from readstore.db import Document
from workers.deadletters.record import DELIVERY_OPTIONS, REPLAY_OPTION, now, queue_of
from workers.deadletters.store import DEAD, DeadLetterStore

log = structlog.get_logger("sagaworks.replay")
#: What a replay reads of an entry.
REPLAY_FIELDS = {
    "envelope": 1,
    "state": 1,
    "replayable": 1,
    "queue": 1,
    "group": 1,
    "replays": 1,
}
#: Entries read, marked and published together (one AMQP transaction on RabbitMQ). Larger
#: batches were slower on SecantusDB, whose ``$in`` grows worse than linearly.
BATCH = 100


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def asdict(self) -> dict[str, Any]:
        return {"replayed": len(self.replayed), "ids": self.replayed, "skipped": self.skipped}


def envelope_for_replay(doc: Document) -> dramatiq.Message[Any]:
    """The stored envelope with a fresh delivery: no retries, no traceback, same id."""
    stored = json.loads(doc["envelope"])
    options = {k: v for k, v in stored.get("options", {}).items() if k not in DELIVERY_OPTIONS}
    options[REPLAY_OPTION] = int(doc.get("replays") or 0) + 1
    return dramatiq.Message(
        queue_name=queue_of(doc["queue"]),
        actor_name=stored["actor_name"],
        args=tuple(stored["args"]),
        kwargs=stored.get("kwargs") or {},
        options=options,
        message_id=stored["message_id"],
    )


def why_not(doc: Document) -> str | None:
    """Why an entry cannot be replayed, or ``None`` when it can."""
    if doc.get("state") != DEAD:
        return f"it is {doc.get('state')}, not dead"
    if not doc.get("replayable"):
        return "no replayable envelope (undecodable or cut for size)"
    return None


def replay(
    ids: Sequence[str],
    by: str,
    *,
    broker: dramatiq.Broker | None = None,
    store: DeadLetterStore | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
) -> ReplayReport:
    """Replay the entries ``ids`` (in batches); those that cannot be replayed are skipped."""
    store = store or DeadLetterStore()
    report = ReplayReport()
    with publisher(broker or dramatiq.get_broker()) as send:
        for start in range(0, len(ids), batch):
            chosen = {"_id": {"$in": list(ids[start : start + batch])}}
            docs = list(store.entries.find(chosen, REPLAY_FIELDS))
            ready = [d for d in docs if not _skip(d, report)]
            if not dry_run and ready:
                _send(ready, by, send, store)
            report.replayed += [d["_id"] for d in ready]
    found = set(report.replayed) | set(report.skipped)
    report.skipped.update({i: "no such dead letter" for i in ids if i not in found})
    return report


def _skip(doc: Document, report: ReplayReport) -> bool:
    reason = why_not(doc)
    if reason is not None:
        report.skipped[doc["_id"]] = reason
    return reason is not None


Send = Callable[[list[dramatiq.Message[Any]]], None]


def _send(docs: list[Document], by: str, send: Send, store: DeadLetterStore) -> None:
    ids = [d["_id"] for d in docs]
    before = {d["_id"]: d for d in docs}
    store.mark(ids, "replayed", {"event": "replayed", "at": now(), "by": by}, before)
    try:
        send([envelope_for_replay(doc) for doc in docs])
    except Exception as exc:
        event = {"event": "replay_failed", "at": now(), "by": by, "reason": str(exc)[:500]}
        store.mark(ids, DEAD, event)
        raise
    log.info("deadletter.replayed", count=len(ids), by=by)


@contextmanager
def publisher(broker: dramatiq.Broker) -> Iterator[Send]:
    """A sender of batches; on RabbitMQ each batch is one transaction (all or none)."""
    if not isinstance(broker, RabbitmqBroker):

        def enqueue(messages: list[dramatiq.Message[Any]]) -> None:
            for message in messages:
                broker.enqueue(message)

        yield enqueue
        return
    connection = pika.BlockingConnection(broker.parameters)
    channel = connection.channel()
    channel.tx_select()
    declared: set[str] = set()

    def send(messages: list[dramatiq.Message[Any]]) -> None:
        for queue in {m.queue_name for m in messages} - declared:
            broker.declare_queue(queue, ensure=True)  # a publish to a missing queue is lost
            declared.add(queue)
        for message in messages:
            properties = pika.BasicProperties(delivery_mode=2)
            channel.basic_publish("", message.queue_name, message.encode(), properties)
        channel.tx_commit()

    try:
        yield send
    finally:
        connection.close()
