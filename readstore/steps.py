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
reading anything. The caller resumes the bulk at the next event's first step. Any other
refusal of one step (a document someone broke by hand, one that would outgrow the store's
limit) is that event's own failure in the same way: a caller that collects failures gets
the error for that event, and the bulk resumes at the next one.

A ``fresh`` step is the first write of a stream to a document that, as a rule, does not
exist yet (``Follow.creates``): a batch made of such steps alone goes to the store as one
plain insert (``insert_new``), which does less work than the upsert (no look-up, no update
of a match). A step whose document exists after all is written as its upsert, next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymongo import InsertOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, WriteError

from readstore.db import Document

Kind = Literal["create", "require", "maybe"]
CREATE: Kind = "create"
REQUIRE: Kind = "require"
MAYBE: Kind = "maybe"
#: The store's answers to a missed step: an existing ``_id`` met, or ``_id`` changed.
MISSES = frozenset({11000, 66})
#: An ``_id`` no document has: a required step's insert would set it, and fails.
_NEVER = {"$never": "a required step inserts nothing"}
#: The operators a fresh step may use: its insert is then the document its upsert makes.
_PLAIN = frozenset({"$set", "$setOnInsert"})


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
    #: A first write that, as a rule, finds no document: it may go as an insert (``plain``
    #: updates of ``CREATE`` steps only).
    fresh: bool = field(default=False, compare=False)

    def operation(self) -> UpdateOne:
        filters: list[Mapping[str, Any]] | None = list(self.array_filters) or None
        if self.kind == MAYBE:
            return UpdateOne(self.query, self.update, array_filters=filters)
        if self.kind == CREATE:
            return UpdateOne(self.query, self.update, upsert=True, array_filters=filters)
        insert = {**self.update.get("$setOnInsert", {}), "_id": _NEVER}
        update = {**self.update, "$setOnInsert": insert}
        return UpdateOne(self.query, update, upsert=True, array_filters=filters)

    def insertion(self) -> InsertOne[Document]:
        """The document this ``CREATE`` step's upsert inserts when there is none."""
        fields = {**self.update.get("$setOnInsert", {}), **self.update.get("$set", {})}
        return InsertOne({"_id": self.query["_id"], **fields})


def plain(update: dict[str, Any]) -> bool:
    """Whether ``update`` only sets top-level fields (its upsert's document is then
    ``_id`` and those fields)."""
    fields = [key for op in update.values() for key in op]
    return set(update) <= _PLAIN and not any("." in key for key in fields)


def run_steps(
    collection: Collection[Document],
    groups: Sequence[Sequence[Step]],
    failed: dict[int, WriteError] | None = None,
) -> set[int]:
    """Run each group's steps in order, all groups in one ordered bulk write (more only
    after a miss); the indexes of the groups that missed a step (their later steps skipped).
    With ``failed``, a group whose step the store refused for another reason gets its error
    there and the rest run; without it, that error is raised."""
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
            start = _resume(exc, start, owner, starts, missed, failed=failed)
    return missed


def insert_new(
    collection: Collection[Document], groups: Sequence[Sequence[Step]]
) -> list[list[Step]]:
    """When every group is one ``fresh`` step, insert their documents in one unordered
    command; ``groups`` without the steps inserted. A step whose document exists stays,
    to be written as its upsert (which then applies it, or misses)."""
    held = [g for g, group in enumerate(groups) if group]
    if not held or any(len(groups[g]) > 1 or not groups[g][0].fresh for g in held):
        return [list(group) for group in groups]
    try:
        collection.bulk_write([groups[g][0].insertion() for g in held], ordered=False)
        kept: set[int] = set()
    except BulkWriteError as exc:
        kept = {held[i] for i in _not_inserted(exc)}
    return [list(group) if g in kept else [] for g, group in enumerate(groups)]


def _not_inserted(exc: BulkWriteError) -> set[int]:
    """The inserts the store refused: one that met a document with its ``_id`` (its upsert
    then applies it or misses), or any other refusal of that document alone (its upsert
    then meets it again, as that group's own error). A write concern not met is raised."""
    if exc.details.get("writeConcernErrors"):
        raise exc
    return {e["index"] for e in exc.details["writeErrors"]}


def _resume(
    exc: BulkWriteError,
    start: int,
    owner: list[int],
    starts: list[int],
    missed: set[int],
    *,
    failed: dict[int, WriteError] | None,
) -> int:
    """Record the group whose step missed (or, with ``failed``, was refused); where the
    bulk goes on (its next group)."""
    errors = exc.details["writeErrors"]
    if len(errors) != 1 or exc.details.get("writeConcernErrors"):
        raise exc
    (error,) = errors
    group = owner[start + error["index"]]
    if error["code"] in MISSES:
        missed.add(group)
    elif failed is not None:
        failed[group] = WriteError(error.get("errmsg", ""), error["code"], error)
    else:
        raise exc
    return starts[group + 1] if group + 1 < len(starts) else len(owner)
