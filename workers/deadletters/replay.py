"""Replay: dead letters back to their original queue, fresh retry count, same message id, audited.

Crash-safe and exclusive. A replay *claims* each entry (``dead`` → ``replaying`` under its own
token and a lease) with a conditional write, so two replays never both own an entry. On
RabbitMQ a claimed batch is published in one AMQP transaction together with a marker naming
the batch's token in the replay journal queue; the entries become ``replayed`` only after the
commit returned. A replay killed at any point is settled by the next one: a batch whose marker
is in the journal was sent (its entries are marked replayed); a batch whose lease ran out
without a marker never reached the broker (its entries are dead again, to be replayed).
Keeping the message id keeps every consumer's idempotency: a replay applies once in effect.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dramatiq
import structlog
from pymongo import UpdateOne

from readstore.db import Document
from workers.deadletters.publisher import LEASE_MARGIN, Batch, Publisher, publisher
from workers.deadletters.record import DELIVERY_OPTIONS, REPLAY_OPTION, now, queue_of
from workers.deadletters.store import DEAD, REPLAYED, REPLAYING, DeadLetterStore
from workers.runtime.progress import progress_bar

log = structlog.get_logger("sagaworks.replay")
#: What a replay reads of an entry.
REPLAY_FIELDS = {"envelope": 1, "state": 1, "replayable": 1, "queue": 1, "group": 1, "replays": 1}
#: How long a replay owns the entries it claimed; it never commits a batch past it.
DEFAULT_LEASE_SECONDS = 60.0


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)

    def asdict(self) -> dict[str, Any]:
        return {
            "replayed": len(self.replayed),
            "ids": self.replayed,
            "skipped": self.skipped,
            "settled": self.settled,
        }


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
        return "no replayable envelope (refused at the door, undecodable or cut for size)"
    return None


def replay(
    ids: Sequence[str],
    by: str,
    *,
    broker: dramatiq.Broker | None = None,
    store: DeadLetterStore | None = None,
    dry_run: bool = False,
    batch: int = 100,
    lease: float = DEFAULT_LEASE_SECONDS,
) -> ReplayReport:
    """Replay the entries ``ids`` (in batches); those that cannot be replayed are skipped."""
    store = store or DeadLetterStore()
    report = ReplayReport()
    with (
        publisher(broker or dramatiq.get_broker()) as send,
        progress_bar("replayed", len(ids)) as show,
    ):
        report.settled = settle(store, send)
        for start in range(0, len(ids), batch):
            show(start)
            chunk = list(ids[start : start + batch])
            docs = list(store.entries.find({"_id": {"$in": chunk}}, REPLAY_FIELDS))
            ready = [d["_id"] for d in docs if not _skip(d, report)]
            if ready and not dry_run:
                ready = _replay_batch(ready, by, send=send, store=store, lease=lease, report=report)
                sent = set(ready)
                store.summary.moved({d["_id"]: d for d in docs if d["_id"] in sent}, REPLAYED)
            report.replayed += ready
        show(len(ids))
        settle(store, send)
    found = set(report.replayed) | set(report.skipped)
    report.skipped.update({i: "no such dead letter" for i in ids if i not in found})
    return report


def _skip(doc: Document, report: ReplayReport) -> bool:
    reason = why_not(doc)
    if reason is not None:
        report.skipped[doc["_id"]] = reason
    return reason is not None


def _replay_batch(
    ids: list[str],
    by: str,
    *,
    send: Publisher,
    store: DeadLetterStore,
    lease: float,
    report: ReplayReport,
) -> list[str]:
    """Claim, send in one transaction, then mark replayed; the ids this replay sent."""
    token, deadline = uuid.uuid4().hex, time.monotonic() + lease * (1 - LEASE_MARGIN)
    docs = claim(store, ids, token, by, lease)
    taken = [d["_id"] for d in docs]
    report.skipped.update(dict.fromkeys(set(ids) - set(taken), "claimed by another replay"))
    if not docs:
        return []
    batch = Batch(token, tuple(taken))
    try:
        send.batch([envelope_for_replay(doc) for doc in docs], batch, deadline)
    except Exception as exc:
        release(store, batch, by, f"not sent: {str(exc)[:300]}")
        raise
    finish(store, [batch], by)
    log.info("deadletter.replayed", count=len(docs), by=by)
    return taken


def claim(
    store: DeadLetterStore, ids: list[str], token: str, by: str, lease: float
) -> list[Document]:
    """Take the dead entries among ``ids`` for this replay alone; the documents taken."""
    until = now() + timedelta(seconds=lease)
    taken = {
        "$set": {"state": str(REPLAYING), "replay": {"token": token, "until": until, "by": by}}
    }
    _each(store, [({"_id": i, "state": str(DEAD)}, taken) for i in ids])
    return list(store.entries.find({"_id": {"$in": ids}, "replay.token": token}, REPLAY_FIELDS))


def _each(store: DeadLetterStore, updates: list[tuple[Document, Document]]) -> int:
    """One conditional update per entry, matched on its id (the id index), in one round trip."""
    if not updates:
        return 0
    ops = [UpdateOne(query, update) for query, update in updates]
    return store.entries.bulk_write(ops, ordered=False).modified_count


def finish(store: DeadLetterStore, batches: list[Batch], by: str) -> int:
    """The batches reached the broker: their entries are replayed."""
    event = {"event": "replayed", "at": now(), "by": by}
    update: Document = {
        "$set": {"state": str(REPLAYED)},
        "$unset": {"replay": ""},
        "$inc": {"replays": 1},
        "$push": {"history": {"$each": [event], "$slice": -50}},
    }
    return _each(store, [(query, update) for batch in batches for query in _owned(batch)])


def release(store: DeadLetterStore, batch: Batch, by: str, reason: str) -> int:
    """A batch that never reached the broker: its entries are dead again."""
    event = {"event": "replay_failed", "at": now(), "by": by, "reason": reason}
    return _each(store, [(query, _dead_again(event)) for query in _owned(batch)])


def _owned(batch: Batch) -> list[Document]:
    """Each entry of ``batch`` while this batch still owns it."""
    return [{"_id": i, "replay.token": batch.token, "state": str(REPLAYING)} for i in batch.ids]


def settle(store: DeadLetterStore, send: Publisher) -> dict[str, int]:
    """Finish what an interrupted replay left ``replaying``: sent → replayed, else dead."""
    batches, ack = send.journal()
    sent = finish(store, batches, "replay journal") if batches else 0
    ack()
    expired = {"state": str(REPLAYING), "replay.until": {"$lt": now()}}
    back = _back_to_dead(store, expired, "replay journal", "interrupted before it was sent")
    if sent or back:
        log.warning("replay.settled", replayed=sent, dead_again=back)
    return {"replayed": sent, "dead_again": back}


def _back_to_dead(store: DeadLetterStore, query: Document, by: str, reason: str) -> int:
    event = {"event": "replay_failed", "at": now(), "by": by, "reason": reason}
    return store.entries.update_many(query, _dead_again(event)).modified_count


def _dead_again(event: Document) -> Document:
    return {
        "$set": {"state": str(DEAD)},
        "$unset": {"replay": ""},
        "$push": {"history": {"$each": [event], "$slice": -50}},
    }
