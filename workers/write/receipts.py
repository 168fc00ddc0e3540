"""Dispatch receipts and the relay's watermark: what the outbox knows was sent, without
updating a commit.

Once a thread's publishes are confirmed, the ids of the commits they carried join the
write-behind, which inserts them as one receipt per database per flush:
``{_id, at: <flush time>, commits: [ids]}``. A receipt is always written after the commits it
names, so a commit's receipt is never older than the commit (but for clock skew between hosts,
allowed for by ``CLOCK_SKEW``).

The relay keeps one watermark (``outbox_relay``, advanced with ``$max``, so relays running at
once never move it back): every commit at or before it has been examined. A commit past it,
past the grace and named by no receipt, is *undispatched*. Commits stored before receipts carry
``dispatched: True`` once sent; every later commit keeps ``dispatched: False``, so the relay
reads one plain range of the partial index ``outbox`` for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from readstore.db import Document
from readstore.eventlog import commits

RECEIPTS = "outbox_receipts"
RELAY = "outbox_relay"
#: Where the watermark starts: every commit stored before receipts is past it.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
#: How far the clocks of two hosts may disagree: receipts this much older still count.
CLOCK_SKEW = timedelta(seconds=2)
#: Receipts this far behind the watermark are deleted (nothing reads them any more).
KEPT_BEHIND = timedelta(minutes=10)

#: One commit as the relay reads it: its id and when it was committed.
Entry = tuple[str, datetime]


def receipts(database: Database[Document]) -> Collection[Document]:
    return database[RECEIPTS]


def ensure_indexes(database: Database[Document]) -> None:
    receipts(database).create_index([("at", ASCENDING)], name="receipt_at")


def receipt(commit_ids: list[str]) -> Document:
    """The receipt of ``commit_ids``, stamped now (written by the write-behind's flush)."""
    return {"_id": ObjectId(), "at": datetime.now(UTC), "commits": commit_ids}


def watermark(database: Database[Document]) -> datetime:
    """Every commit at or before this has been examined by a relay."""
    doc = database[RELAY].find_one({"_id": "watermark"})
    at: datetime = doc["at"] if doc else BEGINNING
    return at


def advance(database: Database[Document], at: datetime) -> None:
    """Move the watermark to ``at``, unless a relay has moved it further already."""
    database[RELAY].update_one({"_id": "watermark"}, {"$max": {"at": at}}, upsert=True)


def forget(database: Database[Document], mark: datetime) -> int:
    """Delete the receipts far behind the watermark ``mark``; how many."""
    return receipts(database).delete_many({"at": {"$lt": mark - KEPT_BEHIND}}).deleted_count


def receipted(database: Database[Document], since: datetime, until: datetime) -> set[str]:
    """The commits named by receipts written in (``since`` - skew, ``until`` + skew]."""
    window = {"$gt": since - CLOCK_SKEW, "$lte": until + CLOCK_SKEW}
    return {
        c for r in receipts(database).find({"at": window}, {"commits": 1}) for c in r["commits"]
    }


def past(
    database: Database[Document], after: datetime, until: datetime, batch: int
) -> Iterator[tuple[list[Entry], datetime | None]]:
    """The commits with ``committed_at`` in (``after``, ``until``], not parked and not marked
    dispatched by an older release, in pages of up to ``batch``, oldest first: ids only; each
    with the instant up to which every commit has been read (``None``: not one yet).

    One plain range of the index ``outbox`` (on this store a condition on another field, even
    ``parked: None`` or ``_id: {$nin}``, turns it into a collection scan: those are sifted
    here). A full page's last instant is read again from the next page on, past the ids seen.
    """
    lower: Document = {"$gt": after}
    seen: set[str] = set()
    while True:
        cursor = commits(database).find(range_query(lower, until), {"committed_at": 1, "parked": 1})
        docs = list(cursor.sort("committed_at", ASCENDING).limit(batch + len(seen)))
        fresh = [d for d in docs if d["_id"] not in seen]
        page = [(d["_id"], d["committed_at"]) for d in fresh if d.get("parked") is None]
        if len(docs) < batch + len(seen) or not fresh:
            yield page, docs[-1]["committed_at"] if docs else None
            return
        last = fresh[-1]["committed_at"]
        yield (
            page,
            max((d["committed_at"] for d in fresh if d["committed_at"] < last), default=None),
        )
        tied = {d["_id"] for d in fresh if d["committed_at"] == last}
        seen = tied | (seen if lower.get("$gte") == last else set())
        lower = {"$gte": last}


def range_query(lower: Document, until: datetime) -> Document:
    """Commits from ``lower`` (``$gt`` or ``$gte``) to ``until`` not marked dispatched: implies
    the partial filter of the index ``outbox``, and is nothing but its range."""
    return {"dispatched": False, "committed_at": {**lower, "$lte": until}}


def unreceipted(page: list[Entry], database: Database[Document], through: datetime) -> list[Entry]:
    """The commits of ``page`` named by no receipt written up to ``through``."""
    named = receipted(database, page[0][1], through)
    return [entry for entry in page if entry[0] not in named]


def pending(
    database: Database[Document],
    until: datetime,
    batch: int = 1000,
    examine: int | None = None,
) -> Iterator[Entry]:
    """Every commit past the watermark and up to ``until`` that no receipt names yet, oldest
    first (what the relay would re-send, were it past the grace); the receipts are read once,
    and no more than ``examine`` commits are looked at (``None``: all of them; a page may
    read a few more where commits share an instant)."""
    now, mark = datetime.now(UTC), watermark(database)
    batch = min(batch, examine) if examine else batch
    named: set[str] | None = None
    examined = 0
    for page, _ in past(database, mark, until, batch):
        if page:
            named = receipted(database, mark, now) if named is None else named
            yield from (entry for entry in page if entry[0] not in named)
        examined += len(page)
        if examine is not None and examined >= examine:
            return
