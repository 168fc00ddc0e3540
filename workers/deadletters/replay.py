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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dramatiq
import structlog

from readstore.db import Document
from workers.deadletters.claims import claim_ids, finish, release, settle
from workers.deadletters.publisher import LEASE_MARGIN, Batch, Publisher, publisher
from workers.deadletters.record import DELIVERY_OPTIONS, REPLAY_OPTION, queue_of
from workers.deadletters.selector import Selector
from workers.deadletters.store import DEAD, DeadLetterStore
from workers.deadletters.transitions import placed
from workers.runtime.progress import progress_bar

log = structlog.get_logger("sagaworks.replay")
#: How long a replay owns the entries it claimed; it never commits a batch past it.
DEFAULT_LEASE_SECONDS = 60.0
#: Entries per batch of a selection's replay (one claim, one transaction, one update).
SELECTION_BATCH = 1000


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
    chunks = (list(ids[start : start + batch]) for start in range(0, len(ids), batch))
    seen = (placed(store, chunk) for chunk in chunks)
    report = _replayed(store, seen, by, broker, (dry_run, lease, len(ids)))
    found = set(report.replayed) | set(report.skipped)
    report.skipped.update({i: "no such dead letter" for i in ids if i not in found})
    return report


def replay_selected(
    selector: Selector,
    by: str,
    *,
    broker: dramatiq.Broker | None = None,
    store: DeadLetterStore | None = None,
    dry_run: bool = False,
    batch: int = SELECTION_BATCH,
    lease: float = DEFAULT_LEASE_SECONDS,
) -> ReplayReport:
    """Replay every dead entry ``selector`` picks, newest first, a page of the listing at a
    time: no step reads the whole selection, and each page is claimed in one bulk write,
    sent in one transaction and marked replayed in one bulk write."""
    store = store or DeadLetterStore()
    seen = pages(store, selector, batch)
    return _replayed(store, seen, by, broker, (dry_run, lease, store.count(selector)))


def _replayed(
    store: DeadLetterStore,
    batches: Iterable[dict[str, Document]],
    by: str,
    broker: dramatiq.Broker | None,
    how: tuple[bool, float, int],
) -> ReplayReport:
    """Replay each batch of entries (as read: state, queue, group); ``how``: dry run, the
    lease, and how many entries there are for the progress bar."""
    dry_run, lease, total = how
    report, finished = ReplayReport(), set[str]()
    with (
        publisher(broker or dramatiq.get_broker()) as send,
        progress_bar("replayed", total) as show,
    ):
        report.settled = settle(store, send)
        for seen in batches:
            show(len(report.replayed))
            ready = {i: d for i, d in seen.items() if not _skip(d, report)}
            if dry_run or not ready:
                report.replayed += list(ready)
                continue
            owner = _lease(lease)
            docs = claim_ids(store, ready, owner[0], by, lease)
            _lost(ready, docs, report)
            report.replayed += _send(store, send, docs, by, owner)
            finished.add(owner[0])
        show(total)
        settle(store, send, frozenset(finished))
    return report


def pages(store: DeadLetterStore, selector: Selector, size: int) -> Iterator[dict[str, Document]]:
    """The selection's dead entries, newest first, a page at a time; a page holds every
    entry that failed at the same moment as its oldest, so the next page starts before it."""
    chosen = replace(selector, state=DEAD)
    while page := store.find(chosen, size):
        oldest = page[-1]["last_failed_at"]
        yield {d["_id"]: d for d in page + store.failed_at(chosen, oldest)}
        chosen = replace(chosen, before=oldest)


def _lease(lease: float) -> tuple[str, float]:
    """A new replay token, and the moment after which its batch must not be committed."""
    return uuid.uuid4().hex, time.monotonic() + lease * (1 - LEASE_MARGIN)


def _skip(doc: Document, report: ReplayReport) -> bool:
    reason = why_not(doc)
    if reason is not None:
        report.skipped[doc["_id"]] = reason
    return reason is not None


def _lost(ready: dict[str, Document], docs: list[Document], report: ReplayReport) -> None:
    """The entries of ``ready`` another replay claimed first are skipped."""
    lost = set(ready) - {d["_id"] for d in docs}
    report.skipped.update(dict.fromkeys(lost, "claimed by another replay"))


def _send(
    store: DeadLetterStore, send: Publisher, docs: list[Document], by: str, owner: tuple[str, float]
) -> list[str]:
    """Send the claimed ``docs`` in one transaction before the deadline of ``owner`` (token,
    deadline), then mark them replayed; their ids."""
    if not docs:
        return []
    token, deadline = owner
    batch, known = Batch(token, tuple(d["_id"] for d in docs)), {d["_id"]: d for d in docs}
    try:
        send.batch([envelope_for_replay(doc) for doc in docs], batch, deadline)
    except Exception as exc:
        release(store, batch, by, f"not sent: {str(exc)[:300]}", known)
        raise
    finish(store, [batch], by, known)
    log.info("deadletter.replayed", count=len(docs), by=by)
    return list(batch.ids)
