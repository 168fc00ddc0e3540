"""The dead-letter store: every message that failed for good, why, how often, and its history.

An entry is keyed by the envelope's message id, which retries and replays keep: a replayed
message that fails again comes back as the same entry, its history growing. Each entry counts
the ``.XQ`` copies RabbitMQ still holds for failures the middleware already recorded
(``xq_pending``), so the ingester can ack those copies without recording them twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import islice
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from readstore.db import Document, get_database
from workers.deadletters.record import Failure, now
from workers.deadletters.selector import SELECTED, Selector, holds
from workers.deadletters.summary import Span, Summary
from workers.deadletters.transitions import delete, move, placed

COLLECTION = "dead_letters"
#: The narrowest time window a listing reads.
WINDOW = timedelta(milliseconds=50)
HISTORY_KEPT = 50


class State(StrEnum):
    """Where a dead letter is in its life: dead → replaying → replayed (or archived)."""

    DEAD = "dead"
    #: Claimed by one replay (``replay.token``) and not yet confirmed sent by the broker.
    REPLAYING = "replaying"
    REPLAYED = "replayed"
    ARCHIVED = "archived"
    #: Processed successfully on a later delivery or replay: it was not dead after all.
    RESOLVED = "resolved"


DEAD, REPLAYING, REPLAYED, ARCHIVED = State.DEAD, State.REPLAYING, State.REPLAYED, State.ARCHIVED
RESOLVED = State.RESOLVED
#: Fields a listing shows; the envelope, message and traceback only ``show`` reads.
SUMMARY = {
    "envelope": 0,
    "raw_body": 0,
    "message": 0,
    "traceback": 0,
    "history": 0,
}


class DeadLetterStore:
    def __init__(self, database: Database[Document] | None = None) -> None:
        self.database = database if database is not None else get_database()
        self.entries: Collection[Document] = self.database[COLLECTION]
        self.summary = Summary(self.database)

    def indexes(self) -> None:
        """Each listing's filter is an index prefix followed by the failure time, so a page
        reads one bounded range of one index."""
        for prefix in ([("state", ASCENDING)], [("queue", ASCENDING), ("state", ASCENDING)]):
            self.entries.create_index([*prefix, ("last_failed_at", DESCENDING)])
        self.entries.create_index(
            [("group", ASCENDING), ("state", ASCENDING), ("last_failed_at", DESCENDING)]
        )

    # -- recording -------------------------------------------------------------------------
    def record(self, failure: Failure, *, copy_in_xq: bool) -> None:
        """Store one dead-lettering; ``copy_in_xq``: RabbitMQ also holds it in ``.XQ``."""
        self.record_many([failure], copy_in_xq=copy_in_xq)

    def record_many(self, failures: Iterable[Failure], *, copy_in_xq: bool) -> int:
        chosen = list(failures)
        if not chosen:
            return 0
        before = placed(self, [f.key for f in chosen])
        self.entries.bulk_write([_upsert(f, copy_in_xq) for f in chosen], ordered=True)
        self.summary.recorded(chosen, before)
        return len(chosen)

    def claim_xq_copies(self, keys: Sequence[str]) -> Counter[str]:
        """Of ``keys`` (one per ``.XQ`` copy), those whose failure is already recorded.

        Each such copy decrements its entry's ``xq_pending``; the copies not claimed are
        failures no middleware saw, to be recorded from ``.XQ``.
        """
        wanted = Counter(keys)
        found = self.entries.find({"_id": {"$in": list(wanted)}, "xq_pending": {"$gt": 0}})
        claimed = Counter({d["_id"]: min(wanted[d["_id"]], d["xq_pending"]) for d in found})
        ops = [
            UpdateOne({"_id": key, "xq_pending": {"$gte": n}}, {"$inc": {"xq_pending": -n}})
            for key, n in claimed.items()
        ]
        if ops:
            self.entries.bulk_write(ops, ordered=False)
        return claimed

    # -- reading ---------------------------------------------------------------------------
    def find(
        self, selector: Selector, limit: int = 50, fields: Document = SUMMARY
    ) -> list[Document]:
        """The newest ``limit`` entries ``selector`` picks, read in bounded time windows.

        The windows start at the newest failure the summary knows of, about twice the width
        a page needs at the selection's average rate, and double until the page is full or
        the oldest failure is passed: no query reads more than a few pages' worth of
        entries, even from a store that sorts before it limits."""
        limit = max(limit, 1)
        span = None if selector.ids else self.span(selector)
        if span is None:
            return self._read(selector, limit, fields)
        return self._windows(selector, span, limit, fields)

    def newest(self, selector: Selector, limit: int, fields: Document = SUMMARY) -> list[Document]:
        """The newest ``limit`` entries ``selector`` picks, by one sorted read of its index
        range (the whole range is read: for ranges known to be small)."""
        return self._read(selector, limit, fields)

    def _read(self, selector: Selector, limit: int | None, fields: Document) -> list[Document]:
        """The newest ``limit`` (``None``: all) entries of one index range ``selector`` picks."""
        query, rest = selector.split()
        cursor = self.entries.find(query, fields).sort("last_failed_at", -1)
        if not rest:
            return list(cursor.limit(limit or 0))
        return list(islice((d for d in cursor if holds(d, rest)), limit))

    def failed_at(
        self, selector: Selector, moment: datetime, fields: Document = SUMMARY
    ) -> list[Document]:
        """Every entry ``selector`` picks that last failed at ``moment`` (a page's edge)."""
        return self.read_range(selector, fields, moment)

    def read_range(
        self, selector: Selector, fields: Document, moment: datetime | None = None
    ) -> list[Document]:
        """Every entry ``selector`` picks, in no order, read from one index range (only those
        that last failed at ``moment``, if given)."""
        query, rest = selector.split()
        if moment is not None:
            query["last_failed_at"] = moment
        return [d for d in self.entries.find(query, fields) if holds(d, rest)]

    def span(self, selector: Selector) -> Span | None:
        """How many entries ``selector`` picks and when they failed, from the summary."""
        rows = self.summary.matching(selector.state, selector.group, selector.queue, selector.error)
        return self.summary.span(rows, selector.state)

    def _windows(
        self, selector: Selector, span: Span, limit: int, fields: Document
    ) -> list[Document]:
        oldest = max(span.first, selector.since) if selector.since else span.first
        upper = span.last + timedelta(milliseconds=1)
        upper = min(upper, selector.before) if selector.before else upper
        width = max((span.last - span.first) * (2 * limit) / max(span.count, 1), WINDOW)
        found: list[Document] = []
        while len(found) < limit and upper > oldest:
            lower = max(upper - width, oldest)
            window = replace(selector, since=lower, before=upper)
            found += self._read(window, limit - len(found), fields)
            upper, width = lower, width * 2
        return found

    def get(self, entry_id: str) -> Document | None:
        return self.entries.find_one({"_id": entry_id})

    def ids(self, selector: Selector) -> list[str]:
        return [d["_id"] for d in self._read(selector, None, SELECTED)]

    def groups(self, state: str = DEAD, limit: int | None = None) -> list[Document]:
        """Entries grouped by error type and stack fingerprint, largest group first (read
        from the summary, rebuilt first when a store written before it has none)."""
        if self.summary.empty() and self.entries.find_one({}, {"_id": 1}) is not None:
            self.summary.recount(self.entries)
        return self.summary.groups(state, limit)

    def count(self, selector: Selector) -> int:
        """How many entries ``selector`` picks (from the summary for a group or queue)."""
        if selector.ids or selector.actor or selector.since or selector.before:
            return len(self.ids(selector))
        rows = self.summary.matching(selector.state, selector.group, selector.queue, selector.error)
        span = self.summary.span(rows, selector.state)
        return span.count if span else 0

    def recount(self) -> int:
        """Rebuild the summary from the entries; how many (group, queue) rows it has."""
        return self.summary.recount(self.entries)

    def aggregated_groups(self, state: str = DEAD) -> list[Document]:
        """The groups aggregated from the entries themselves (what the summary must equal)."""
        pipeline: list[Document] = [
            {"$match": {"state": str(state)}},
            {
                "$group": {
                    "_id": "$group",
                    "error_type": {"$first": "$error_type"},
                    "cause": {"$first": "$cause"},
                    "count": {"$sum": 1},
                    "queues": {"$addToSet": "$queue"},
                    "first_seen": {"$min": "$first_failed_at"},
                    "last_seen": {"$max": "$last_failed_at"},
                    "example": {"$first": "$_id"},
                    "reason": {"$first": "$reason"},
                }
            },
            {"$sort": {"count": -1, "_id": 1}},
        ]
        return list(self.entries.aggregate(pipeline))

    def counts_by_queue(self, state: str = DEAD) -> dict[str, int]:
        return self.summary.by_queue(state)

    # -- operating -------------------------------------------------------------------------
    def mark(
        self,
        ids: Sequence[str],
        state: str,
        event: Document,
        before: Mapping[str, Document] | None = None,
    ) -> int:
        """Move ``ids`` to ``state`` and append ``event`` to their history; ``before``: where
        the caller saw them (state, queue, group). Only entries still as seen move, and only
        those are counted: a second operator doing the same finds nothing left to move."""
        if not ids:
            return 0
        update: Document = {
            "$set": {"state": str(state)},
            "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
        }
        if event.get("event") == "replayed":
            update["$inc"] = {"replays": 1}
        seen = before if before is not None else placed(self, ids)
        return len(move(self, seen, state, update))

    def is_recorded(self, entry_id: str) -> bool:
        """Whether ``entry_id`` has a record a later success would resolve (dead or replayed)."""
        query = {"_id": entry_id, "state": {"$in": [DEAD, REPLAYED]}}
        return self.entries.count_documents(query, limit=1) > 0

    def resolve(self, entry_id: str, how: str) -> bool:
        """The message of ``entry_id`` was processed after all: its record stops counting as
        dead, and its history says how. ``False`` when there was nothing to resolve."""
        event = {"event": "resolved", "at": now(), "reason": how}
        before = self.entries.find_one_and_update(
            {"_id": entry_id, "state": {"$in": [str(DEAD), str(REPLAYED)]}},
            {
                "$set": {"state": str(RESOLVED), "updated_at": event["at"]},
                "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
            },
            projection={"state": 1, "queue": 1, "group": 1},
        )
        if before is None:
            return False
        self.summary.moved({entry_id: before}, RESOLVED)
        return True

    def purge(self, ids: Sequence[str]) -> int:
        return delete(self, placed(self, ids)) if ids else 0


def _upsert(failure: Failure, copy_in_xq: bool) -> UpdateOne:
    """The write recording ``failure``; its key is a computed string, matched literally.

    A failure whose final exception is unknown (``known`` false) leaves the cause an entry
    already has (error, reason, traceback, group): it only adds to the count and history.
    """
    event = {
        "event": "failed",
        "at": failure.failed_at,
        "error_type": failure.error_type,
        "reason": failure.reason[:500],
        "attempts": failure.attempts,
        "source": failure.source,
    }
    cause = {
        "error_type": failure.error_type,
        "reason": failure.reason[:2000],
        "traceback": failure.traceback,
        "group": failure.fingerprint,
        "cause": failure.cause,
    }
    latest = {
        "state": str(DEAD),
        "queue": failure.queue,
        "raw_body": failure.raw_body,
        "attempts": failure.attempts,
        "last_failed_at": failure.failed_at,
        "source": failure.source,
        "updated_at": now(),
    }
    decoded = {
        "actor": failure.actor,
        "envelope": failure.envelope,
        "message": failure.message,
        "message_type": _text((failure.message or {}).get("type")),
        "correlation_id": _text((failure.message or {}).get("correlation_id")),
        "replayable": failure.replayable,
        "truncated": failure.truncated,
    }
    # A delivery refused undecoded never replaces the envelope an entry of that id holds.
    keep = (cause if not failure.known else {}) | (decoded if failure.envelope is None else {})
    update: Document = {
        "$set": {k: v for k, v in (latest | cause | decoded).items() if k not in keep},
        "$min": {"first_failed_at": failure.first_failed_at},
        "$inc": {"count": 1, "xq_pending": 1 if copy_in_xq else 0},
        "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
    }
    if keep:
        update["$setOnInsert"] = keep
    return UpdateOne({"_id": failure.key}, update, upsert=True)


def _text(value: object) -> str | None:
    return str(value)[:200] if value is not None else None


def summary(doc: Document) -> dict[str, Any]:
    """An entry as a listing row shows it (JSON-friendly)."""
    keys = (
        "_id",
        "state",
        "queue",
        "actor",
        "message_type",
        "error_type",
        "reason",
        "group",
        "attempts",
        "count",
        "replays",
        "first_failed_at",
        "last_failed_at",
        "correlation_id",
    )
    row = {k: doc.get(k) for k in keys}
    row["id"] = row.pop("_id")
    row["replays"] = row["replays"] or 0
    return row
