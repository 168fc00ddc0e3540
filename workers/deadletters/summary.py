"""Dead letters counted by group, queue and state, kept beside the store as entries change.

One small document per (group, queue): its error type, reason and an example, the first and
last failure seen, and a count per state. Grouping, counts by queue and the time span of a
selection are read from it, never by aggregating the entries: with 100k entries those
answers take milliseconds instead of seconds. Every change of the store moves the counts
by exactly the entries a change moved (``transitions``): a change conditional on the state the
caller saw counts only what it changed, so two operators acting on the same entries, or a
replay settled by the next one, count each entry once. A replay's claim is counted under
its batch's token, once per row (the row keeps the last tokens it counted): a replay killed
between its claim and the count is counted when the next one settles the batch. For other
changes, a process killed between an entry's change and its count leaves them apart;
``recount`` rebuilds them from the entries (``sagaworks dlq groups --recount``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from readstore.db import Document

COLLECTION = "dead_letter_groups"
#: Claim tokens a row remembers having counted (a batch is settled within its lease).
COUNTED_KEPT = 500


@dataclass(frozen=True)
class Span:
    """The failures a selection can hold: how many, and between which times."""

    count: int
    first: datetime
    last: datetime


def key(group: str, queue: str) -> str:
    return f"{group} @ {queue}"


class Summary:
    def __init__(self, database: Database[Document]) -> None:
        self.rows: Collection[Document] = database[COLLECTION]

    def recorded(self, failures: Iterable[Any], before: Mapping[str, Document]) -> None:
        """Count ``failures`` (now dead) and uncount what their entries were before."""
        moves: Counter[tuple[str, str, str]] = Counter()
        seen: dict[str, dict[str, Any]] = {}
        now = dict(before)
        for failure in failures:
            _uncount(moves, now.get(failure.key))
            moves[(failure.fingerprint, failure.queue, "dead")] += 1
            now[failure.key] = {
                "state": "dead",
                "queue": failure.queue,
                "group": failure.fingerprint,
            }
            row_key = key(failure.fingerprint, failure.queue)
            seen[row_key] = _described(failure, seen.get(row_key))
        self._apply(moves, seen)

    def moved(
        self, before: Mapping[str, Document], state: str | None, *, once: str | None = None
    ) -> None:
        """Entries ``before`` moved to ``state`` (``None``: deleted); with ``once`` (a claim's
        token), by each row only if it did not count that token yet."""
        moves: Counter[tuple[str, str, str]] = Counter()
        for doc in before.values():
            if doc.get("state") != state:
                _uncount(moves, doc)
                if state is not None:
                    moves[(doc["group"], doc["queue"], state)] += 1
        self._apply(moves, {}, once)

    def _apply(
        self,
        moves: Counter[tuple[str, str, str]],
        seen: dict[str, dict[str, Any]],
        once: str | None = None,
    ) -> None:
        incs: dict[str, dict[str, int]] = {}
        for (group, queue, state), n in moves.items():
            if n:
                incs.setdefault(key(group, queue), {})[f"counts.{state}"] = n
        ops = []
        for row_key in sorted(set(incs) | set(seen)):
            update: Document = {"$inc": incs.get(row_key, {})}
            described = seen.get(row_key)
            if described is not None:
                update["$set"] = described["set"]
                update["$min"] = {"first_seen": described["first"]}
                update["$max"] = {"last_seen": described["last"]}
            update = {k: v for k, v in update.items() if v}
            if once is None:
                ops.append(UpdateOne({"_id": row_key}, update, upsert=True))
                continue
            update["$push"] = {"counted": {"$each": [once], "$slice": -COUNTED_KEPT}}
            ops.append(UpdateOne({"_id": row_key, "counted": {"$ne": once}}, update))
        if ops:
            self.rows.bulk_write(ops, ordered=False)

    # -- reading ---------------------------------------------------------------------------
    def matching(
        self,
        state: str | None,
        group: str | None = None,
        queue: str | None = None,
        error: str | None = None,
    ) -> list[Document]:
        query: Document = {}
        if state is not None:
            query[f"counts.{state}"] = {"$gt": 0}
        for field, value in (("group", group), ("queue", queue), ("error_type", error)):
            if value is not None:
                query[field] = value
        return list(self.rows.find(query))

    def groups(self, state: str, limit: int | None = None) -> list[Document]:
        """Groups in ``state``, largest first, shaped as the store's ``groups`` returns them."""
        merged: dict[str, Document] = {}
        for row in self.matching(state):
            group = merged.setdefault(row["group"], _group(row))
            group["count"] += int(row["counts"][state])
            group["queues"].append(row["queue"])
            group["first_seen"] = min(group["first_seen"], row["first_seen"])
            group["last_seen"] = max(group["last_seen"], row["last_seen"])
        ordered = sorted(merged.values(), key=lambda g: (-g["count"], g["_id"]))
        return ordered[:limit] if limit else ordered

    def by_queue(self, state: str) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for row in self.matching(state):
            counts[row["queue"]] += int(row["counts"][state])
        return dict(counts)

    def span(self, rows: list[Document], state: str | None) -> Span | None:
        """The count and time span of the entries ``rows`` count (in ``state``, or any)."""
        if not rows:
            return None
        count = sum(int(n) for r in rows for s, n in r["counts"].items() if state in (None, s))
        return Span(count, min(r["first_seen"] for r in rows), max(r["last_seen"] for r in rows))

    def empty(self) -> bool:
        return self.rows.find_one({}, {"_id": 1}) is None

    def recount(self, entries: Collection[Document]) -> int:
        """Rebuild every row from the entries (slow on a large store: an operator's command)."""
        pipeline: list[Document] = [
            {
                "$group": {
                    "_id": {"group": "$group", "queue": "$queue", "state": "$state"},
                    "n": {"$sum": 1},
                    "error_type": {"$last": "$error_type"},
                    "reason": {"$last": "$reason"},
                    "cause": {"$last": "$cause"},
                    "example": {"$last": "$_id"},
                    "first": {"$min": "$first_failed_at"},
                    "last": {"$max": "$last_failed_at"},
                }
            }
        ]
        rows: dict[str, Document] = {}
        for part in entries.aggregate(pipeline):
            ident = part["_id"]
            row = rows.setdefault(key(ident["group"], ident["queue"]), _row(part))
            row["counts"][ident["state"]] = part["n"]
            row["first_seen"] = min(row["first_seen"], part["first"])
            row["last_seen"] = max(row["last_seen"], part["last"])
        self.rows.delete_many({})
        if rows:
            self.rows.insert_many([{"_id": k, **v} for k, v in rows.items()])
        return len(rows)


def _uncount(moves: Counter[tuple[str, str, str]], doc: Document | None) -> None:
    if doc is not None and doc.get("state"):
        moves[(doc["group"], doc["queue"], doc["state"])] -= 1


def _described(failure: Any, earlier: dict[str, Any] | None) -> dict[str, Any]:
    """A row's description from ``failure``, its time span widened by the ``earlier`` ones of
    the same call."""
    fields = {
        "group": failure.fingerprint,
        "queue": failure.queue,
        "error_type": failure.error_type,
        "reason": failure.reason[:500],
        "cause": failure.cause,
        "example": failure.key,
    }
    first, last = failure.first_failed_at, failure.failed_at
    if earlier is not None:
        first, last = min(first, earlier["first"]), max(last, earlier["last"])
    return {"set": fields, "first": first, "last": last}


def _row(part: Document) -> Document:
    ident = part["_id"]
    return {
        "group": ident["group"],
        "queue": ident["queue"],
        "error_type": part["error_type"],
        "reason": (part["reason"] or "")[:500],
        "cause": part.get("cause"),
        "example": part["example"],
        "first_seen": part["first"],
        "last_seen": part["last"],
        "counts": {},
    }


def _group(row: Document) -> Document:
    return {
        "_id": row["group"],
        "error_type": row.get("error_type"),
        "count": 0,
        "queues": [],
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "example": row.get("example"),
        "reason": row.get("reason"),
        "cause": row.get("cause") or row.get("reason"),
    }
