"""Rebuilding a projection from the event store into fresh collections, then swapping them in.

1. *Lease*: one rebuild per projection (``readstore.lease``); from now on every live apply
   also writes to the new collections, which a process learns within ``REGISTRY_TTL``.
2. *Fold*: the log is read in large batches and folded in memory through the projection's
   own apply code (``readstore.fold``).
3. *Write*: unordered ``insert_many`` into the new collections, then their indexes. A
   document the live applies already wrote there meanwhile is replaced by the folded one and
   brought level with its streams from the event store (so its effects run again).
4. *Swap*: ``renameCollection`` over each live collection (atomic for readers; side
   collections first). The live collections served queries until then. Events applied live
   during the rebuild reached the new collections too, so nothing is lost.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database
from pymongo.errors import BulkWriteError

from readstore.db import Document
from readstore.fold import Progress, Report, fold, ignore
from readstore.lease import REBUILDS, REGISTRY_TTL, Lease, abandoned_target, acquire
from readstore.memory import Memory
from readstore.projection import Projection

DUPLICATE_KEY = 11000
WRITE_BATCH = 2000
RENEW_EVERY = 5.0

__all__ = ["REBUILDS", "Outcome", "Progress", "Rebuild", "rebuild_states"]


@dataclass
class Outcome:
    projection: str
    collection: str
    swapped: bool
    events: int
    documents: int
    seconds: float
    reconciled: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class Rebuild:
    """One rebuild of ``projection_type``: lease, fold, write, swap."""

    def __init__(
        self,
        database: Database[Document],
        projection_type: type[Projection],
        *,
        report: Report = ignore,
        settle_seconds: float = REGISTRY_TTL * 1.5,
    ) -> None:
        self.database = database
        self.kind = projection_type
        self.report = report
        self.settle_seconds = settle_seconds
        self.target_name = f"{projection_type.collection_name}__rebuild_{uuid.uuid4().hex[:8]}"
        self._renewed = time.monotonic()

    def run(self) -> Outcome:
        began = time.monotonic()
        lease = self._lease()
        try:
            target = self.kind(self.database, collection=self.target_name)
            time.sleep(self.settle_seconds)  # every process now writes live events here too
            _, memory, progress = fold(
                self.database, self.kind, self.target_name, self.report, lambda: self._renew(lease)
            )
            lease.note(phase="write", events=progress.events)
            reconciled = self._write(target, memory, progress, lease)
            target.indexes()
            lease.note(phase="swap")
            self._swap(target)
        except BaseException:
            lease.release(outcome="failed")
            self._drop(self.target_name)
            raise
        lease.release(outcome="swapped", events=progress.events)
        live = self.kind(self.database)
        live.documents.run(live.touched())  # a model with a query cache: its answers change
        self._drop_strays(target)
        seconds = time.monotonic() - began
        documents = len(memory[self.target_name])
        return Outcome(
            self.kind.name, self.target_name, True, progress.events, documents, seconds, reconciled
        )

    def _lease(self) -> Lease:
        stale = abandoned_target(self.database, self.kind.name)
        lease = acquire(self.database, self.kind.name, self.target_name)
        if stale:
            self._drop(stale)  # the dead holder's half-built collections
        return lease

    def _renew(self, lease: Lease) -> None:
        if time.monotonic() - self._renewed >= RENEW_EVERY:
            lease.renew()
            self._renewed = time.monotonic()

    def _write(self, target: Projection, memory: Memory, progress: Progress, lease: Lease) -> int:
        """Insert the folded documents; reconcile those the live applies wrote first."""
        progress.phase = "write"
        clashes: dict[str, list[Any]] = {}
        for name in target.collection_names():
            docs = list(memory[name])
            for start in range(0, len(docs), WRITE_BATCH):
                clashes.setdefault(name, []).extend(
                    _insert(self.database, name, docs[start : start + WRITE_BATCH])
                )
                progress.documents += min(WRITE_BATCH, len(docs) - start)
                self.report(progress)
                self._renew(lease)
        for name, ids in clashes.items():
            for doc_id in ids:
                self.database[name].replace_one({"_id": doc_id}, memory[name].docs[doc_id])
        for name, ids in clashes.items():
            follows = [f for f in target.follows if target.collection_of(f) == name]
            for doc_id in ids:
                for follow in follows:
                    target.catch_up_stream(follow, str(doc_id))
        return sum(len(ids) for ids in clashes.values())

    def _swap(self, target: Projection) -> None:
        live = self.kind(self.database)
        built = set(self.database.list_collection_names())
        for new, old in zip(target.collection_names(), live.collection_names(), strict=True):
            if new not in built:
                self.database.drop_collection(old)  # the log leaves it empty
                continue
            self.database.client.admin.command(
                "renameCollection",
                f"{self.database.name}.{new}",
                to=f"{self.database.name}.{old}",
                dropTarget=True,
            )

    def _drop_strays(self, target: Projection) -> None:
        """Processes that had not yet seen the lease go may have recreated the new names."""
        time.sleep(REGISTRY_TTL * 1.5)
        for name in target.collection_names():
            self.database.drop_collection(name)

    def _drop(self, collection: str) -> None:
        for name in self.database.list_collection_names():
            if name == collection or name.startswith(f"{collection}_"):
                self.database.drop_collection(name)


def _insert(database: Database[Document], name: str, docs: list[Document]) -> list[Any]:
    """Insert ``docs`` unordered; the ``_id``s that were there already."""
    if not docs:
        return []
    try:
        database[name].insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details["writeErrors"]
        if any(e["code"] != DUPLICATE_KEY for e in errors):
            raise
        return [docs[e["index"]]["_id"] for e in errors]
    return []


def rebuild_states(database: Database[Document]) -> dict[str, Document]:
    """The latest rebuild of each projection (running, or done)."""
    return {doc["_id"]: doc for doc in database[REBUILDS].find()}
