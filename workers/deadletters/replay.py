"""Replay: dead letters back to their original queue, fresh retry count, same message id, audited.

Crash-safe and exclusive, with one store write per entry. A replay *claims* a batch (a page
of the selection: one index range, claimed by one ``update_many``; or given ids) by moving
its entries ``dead`` → ``replayed`` under the batch's token, after storing the open batch
(``claims``). On RabbitMQ the claimed batch is then published in one AMQP transaction
together with a marker naming its token in the replay journal queue, on a sending thread
while the next page is claimed. A replay killed at any point is settled by the next one: a
batch whose marker is in the journal was sent; a batch whose lease ran out without a marker
never reached the broker, and its entries are dead again, to be replayed.
Keeping the message id keeps every consumer's idempotency: a replay applies once in effect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import structlog

from readstore.db import Document
from workers.deadletters.claims import (
    Claim,
    claim_ids,
    claim_range,
    close,
    new_claim,
    release,
    settle,
)
from workers.deadletters.publisher import Batch, Publisher, publisher
from workers.deadletters.record import DELIVERY_OPTIONS, REPLAY_OPTION, queue_of
from workers.deadletters.selector import SELECTED, Selector
from workers.deadletters.store import DEAD, DeadLetterStore
from workers.deadletters.transitions import PLACE, placed
from workers.runtime.progress import progress_bar

log = structlog.get_logger("sagaworks.replay")
#: How long a replay owns the entries it claimed; it never commits a batch past it.
DEFAULT_LEASE_SECONDS = 60.0
#: Entries per batch of a selection's replay (one claim, one transaction).
SELECTION_BATCH = 1000
#: The finest time a store keeps.
MOMENT = timedelta(milliseconds=1)
#: What a page of a selection's replay reads of each entry.
PAGE_FIELDS = {**SELECTED, **PLACE}


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
    """The stored envelope of a claimed entry with a fresh delivery: no retries, no
    traceback, same id."""
    stored = json.loads(doc["envelope"])
    options = {k: v for k, v in stored.get("options", {}).items() if k not in DELIVERY_OPTIONS}
    options[REPLAY_OPTION] = int(doc.get("replays") or 1)  # counted by the claim
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


@dataclass(frozen=True)
class Page:
    """Entries a replay claims together, as read (state, queue, group, replayable), and the
    index range they fill (``None``: they are claimed by id)."""

    seen: dict[str, Document]
    where: Selector | None = None


@dataclass(frozen=True)
class Flight:
    """A claimed batch being sent on the sending thread."""

    claim: Claim
    sent: Future[None]


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
    seen = (Page(placed(store, chunk)) for chunk in chunks)
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
    """Replay every dead entry ``selector`` picks, newest first, about ``batch`` at a time
    (``pages``): no step reads the whole selection, and each page is claimed in one write and
    sent in one transaction while the next page is claimed."""
    store = store or DeadLetterStore()
    seen = pages(store, selector, batch)
    return _replayed(store, seen, by, broker, (dry_run, lease, store.count(selector)))


def _replayed(
    store: DeadLetterStore,
    batches: Iterable[Page],
    by: str,
    broker: dramatiq.Broker | None,
    how: tuple[bool, float, int],
) -> ReplayReport:
    """Replay each batch of entries: claim it, then send it while the next one is claimed;
    ``how``: dry run, the lease, and how many entries there are for the progress bar."""
    dry_run, lease, total = how
    report = ReplayReport()
    with (
        publisher(broker or dramatiq.get_broker()) as send,
        progress_bar("replayed", total) as show,
        ThreadPoolExecutor(1, thread_name_prefix="replay-send") as sending,
    ):
        report.settled = settle(store, send)
        flight: Flight | None = None
        for page in batches:
            show(len(report.replayed))
            claim = _claim(store, page, report, (by, lease, dry_run))
            _landed(store, flight, claim, report)
            flight = _launch(sending, send, claim) if claim else None
        _landed(store, flight, None, report)
        show(total)
        settle(store, send)
    return report


def pages(store: DeadLetterStore, selector: Selector, size: int) -> Iterator[Page]:
    """The selection's dead entries, newest first, about ``size`` at a time.

    A selection one index reads whole goes by time windows of that index, sized from the
    group counts to hold about ``size`` entries (narrowed where they hold many more, widened
    where they hold few): each window is read once, unsorted, and claimed by its range; then
    any entry older than the counts know of is listed. Any other selection walks the listing
    a page at a time."""
    chosen = replace(selector, state=DEAD)
    span = None if chosen.ids or chosen.split()[1] else store.span(chosen)
    if span is None:
        yield from _listed(store, chosen, size, store.find)
        return
    lowest = max(span.first, chosen.since) if chosen.since else span.first
    upper = span.last + MOMENT
    upper = min(upper, chosen.before) if chosen.before else upper
    width = max((span.last - span.first) * size / max(span.count, 1), MOMENT)
    yield from _windows(store, chosen, (lowest, upper), size, width)
    yield from _listed(store, replace(chosen, before=lowest), size, store.newest)


def _windows(
    store: DeadLetterStore,
    chosen: Selector,
    bounds: tuple[datetime, datetime],
    size: int,
    width: timedelta,
) -> Iterator[Page]:
    """Pages of ``chosen`` that failed within ``bounds`` (from, before), by time windows
    newest first, ``width`` wide to start."""
    lowest, upper = bounds
    while upper > lowest:
        since = max(upper - width, lowest)
        where = replace(chosen, since=since, before=upper)
        seen = {d["_id"]: d for d in store.read_range(where, PAGE_FIELDS)}
        if len(seen) > 2 * size and width > MOMENT:
            width = max(width / 4, MOMENT)
            continue
        if seen:
            yield Page(seen, where)
        upper, width = since, width * 2 if len(seen) < size / 2 else width


def _listed(
    store: DeadLetterStore, chosen: Selector, size: int, read: Callable[..., list[Document]]
) -> Iterator[Page]:
    """The listing (``read``) a page at a time; a page holds every entry that failed at the
    same moment as its oldest, so the next page starts before it."""
    ranged = not chosen.ids and not chosen.split()[1]
    while page := read(chosen, size, PAGE_FIELDS):
        oldest = page[-1]["last_failed_at"]
        seen = {d["_id"]: d for d in page + store.failed_at(chosen, oldest, PAGE_FIELDS)}
        yield Page(seen, replace(chosen, since=oldest) if ranged else None)
        chosen = replace(chosen, before=oldest)


def _claim(
    store: DeadLetterStore, page: Page, report: ReplayReport, how: tuple[str, float, bool]
) -> Claim | None:
    """Claim the replayable entries of ``page`` (``how``: by whom, the lease, dry run); the
    claim, or ``None`` when it took nothing."""
    by, lease, dry_run = how
    ready = {i: d for i, d in page.seen.items() if not _skip(d, report)}
    if dry_run or not ready:
        report.replayed += list(ready) if dry_run else []
        return None
    if page.where is not None and len(ready) == len(page.seen):
        claim = claim_range(store, page.where, new_claim(by, lease))
    else:
        claim = claim_ids(store, ready, new_claim(by, lease))
    _lost(ready, claim.entries, report)
    claim = _unfit(store, claim, report)
    if not claim.entries:
        close(store, [claim.token])
        return None
    return claim


def _unfit(store: DeadLetterStore, claim: Claim, report: ReplayReport) -> Claim:
    """The claim without the entries it cannot send (one that entered its range after the
    page was read, with no replayable envelope): those are dead again."""
    unfit = {i: d for i, d in claim.entries.items() if not d.get("replayable")}
    if not unfit:
        return claim
    reason = "no replayable envelope"
    release(store, replace(claim, entries=unfit), claim.by, reason)
    report.skipped.update(dict.fromkeys(unfit, reason))
    return replace(claim, entries={i: d for i, d in claim.entries.items() if i not in unfit})


def _launch(sending: ThreadPoolExecutor, send: Publisher, claim: Claim) -> Flight:
    """Start sending ``claim`` on the sending thread (its queues declared on this one)."""
    send.declare({queue_of(doc["queue"]) for doc in claim.entries.values()})
    return Flight(claim, sending.submit(_send, send, claim))


def _send(send: Publisher, claim: Claim) -> None:
    """Send the claimed entries in one transaction with the batch's journal marker."""
    messages = [envelope_for_replay(doc) for doc in claim.entries.values()]
    send.batch(messages, Batch(claim.token, ()), claim.deadline)


def _landed(
    store: DeadLetterStore, flight: Flight | None, pending: Claim | None, report: ReplayReport
) -> None:
    """Wait for ``flight`` to be committed: its batch is settled, its entries replayed. If it
    was not sent, its entries and those of the ``pending`` claim (not sent yet) are dead
    again."""
    if flight is None:
        return
    try:
        flight.sent.result()
    except Exception as exc:
        reason = f"not sent: {str(exc)[:300]}"
        for claim in (flight.claim, pending):
            if claim is not None:
                release(store, claim, claim.by, reason)
                close(store, [claim.token])
        raise
    close(store, [flight.claim.token])
    report.replayed += list(flight.claim.entries)
    log.info("deadletter.replayed", count=len(flight.claim.entries), by=flight.claim.by)


def _skip(doc: Document, report: ReplayReport) -> bool:
    reason = why_not(doc)
    if reason is not None:
        report.skipped[doc["_id"]] = reason
    return reason is not None


def _lost(ready: dict[str, Document], taken: dict[str, Document], report: ReplayReport) -> None:
    """The entries of ``ready`` another replay claimed first are skipped."""
    lost = set(ready) - set(taken)
    report.skipped.update(dict.fromkeys(lost, "claimed by another replay"))
