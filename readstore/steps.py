"""Steps: the conditional updates that apply one event, run in order as one bulk write.

An event applies as a list of steps on one collection (its stream's document, and for a
projection that sums several streams into one document, that document too). Each step
says what a miss means:

- ``CREATE``: update the document its filter matches, or insert it when there is none;
  a document that exists but does not match is a miss (the insert meets its ``_id``).
- ``REQUIRE``: update the document its filter matches; anything else is a miss (the
  update's insert is made impossible: it would change ``_id``).
- ``MAYBE``: update it if it matches; never a miss (tidying after a change).

The store answers a miss with an error at that step's index, which stops the ordered
bulk write there: the event's later steps do not run, and its outcome is exact without
reading anything. The caller resumes the bulk at the next event's first step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from readstore.db import Document

Kind = Literal["create", "require", "maybe"]
CREATE: Kind = "create"
REQUIRE: Kind = "require"
MAYBE: Kind = "maybe"
#: The store's answers to a missed step: an existing ``_id`` met, or ``_id`` changed.
MISSES = frozenset({11000, 66})
#: An ``_id`` no document has: a required step's insert would set it, and fails.
_NEVER = {"$never": "a required step inserts nothing"}


@dataclass(frozen=True)
class Step:
    """One conditional update of one document of ``collection``."""

    collection: str
    query: dict[str, Any]
    update: dict[str, Any]
    kind: Kind = REQUIRE
    #: Sort key within a bulk (a stream's steps in version order); not part of the write.
    order: tuple[str, int] = field(default=("", 0), compare=False)
    #: The filters of the update's ``$[name]`` paths (``{"name.field": value}``), if any.
    array_filters: tuple[dict[str, Any], ...] = ()

    def operation(self) -> UpdateOne:
        filters: list[Mapping[str, Any]] | None = list(self.array_filters) or None
        if self.kind == MAYBE:
            return UpdateOne(self.query, self.update, array_filters=filters)
        if self.kind == CREATE:
            return UpdateOne(self.query, self.update, upsert=True, array_filters=filters)
        insert = {**self.update.get("$setOnInsert", {}), "_id": _NEVER}
        update = {**self.update, "$setOnInsert": insert}
        return UpdateOne(self.query, update, upsert=True, array_filters=filters)


def run_steps(collection: Collection[Document], groups: Sequence[Sequence[Step]]) -> set[int]:
    """Run each group's steps in order, all groups in one ordered bulk write (more only
    after a miss); the indexes of the groups that missed a step (their later steps skipped)."""
    ops: list[UpdateOne] = []
    owner: list[int] = []
    starts: list[int] = []
    for g, group in enumerate(groups):
        starts.append(len(ops))
        ops += [step.operation() for step in group]
        owner += [g] * len(group)
    missed: set[int] = set()
    start = 0
    while start < len(ops):
        try:
            collection.bulk_write(ops[start:], ordered=True)
            return missed
        except BulkWriteError as exc:
            start = _resume(exc, start, owner, starts, missed)
    return missed


def _resume(
    exc: BulkWriteError, start: int, owner: list[int], starts: list[int], missed: set[int]
) -> int:
    """Record the group whose step missed; where the bulk goes on (its next group)."""
    errors = exc.details["writeErrors"]
    if len(errors) != 1 or errors[0]["code"] not in MISSES:
        raise exc
    group = owner[start + errors[0]["index"]]
    missed.add(group)
    return starts[group + 1] if group + 1 < len(starts) else len(owner)
