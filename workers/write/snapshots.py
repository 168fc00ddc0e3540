"""Aggregate snapshots: the state every N events, so a long stream loads in bounded time.

A snapshot is a cache of ``fold(events[:version])``: losing one is harmless. It is restored
only when its ``schema_version`` matches the aggregate class's ``SCHEMA_VERSION``; otherwise
the aggregate is folded from its whole stream and a fresh snapshot replaces the old one.
State is the class-annotated attributes, stored as JSON through pydantic so types survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, get_origin, get_type_hints

import structlog
from pydantic import TypeAdapter
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from readstore.db import Document
from readstore.eventlog import Commit
from workers.write.aggregates import Aggregate

log = structlog.get_logger("sagaworks.snapshots")

A = TypeVar("A", bound=Aggregate)
SNAPSHOTS = "snapshots"
#: Per stream type overrides of ``SNAPSHOT_EVERY`` (from settings).
_every: dict[str, int] = {}


def configure(every: Mapping[str, int]) -> None:
    """Override ``SNAPSHOT_EVERY`` by stream type (``{"sku": 50}``)."""
    _every.clear()
    _every.update(every)


def snapshot_every(aggregate_type: type[Aggregate]) -> int:
    return _every.get(aggregate_type.stream_type, aggregate_type.SNAPSHOT_EVERY)


_ADAPTERS: dict[type[Aggregate], dict[str, TypeAdapter[Any]]] = {}


def _adapters(aggregate_type: type[Aggregate]) -> dict[str, TypeAdapter[Any]]:
    """A pydantic adapter for each state attribute (the class-annotated, non-ClassVar ones)."""
    if aggregate_type not in _ADAPTERS:
        hints = get_type_hints(aggregate_type)
        _ADAPTERS[aggregate_type] = {
            name: TypeAdapter(hint)
            for name, hint in hints.items()
            if get_origin(hint) is not ClassVar and hint is not ClassVar
        }
    return _ADAPTERS[aggregate_type]


_BASE_ATTRIBUTES = frozenset(vars(Aggregate("-")))


def state_of(aggregate: Aggregate) -> dict[str, Any] | None:
    """The aggregate's state as JSON values; ``None`` when some state is not annotated."""
    adapters = _adapters(type(aggregate))
    unknown = set(vars(aggregate)) - _BASE_ATTRIBUTES - set(adapters)
    if unknown:
        log.warning("snapshot.skipped", aggregate=type(aggregate).__name__, unknown=sorted(unknown))
        return None
    return {
        name: adapter.dump_python(getattr(aggregate, name), mode="json")
        for name, adapter in adapters.items()
    }


def restore(aggregate: Aggregate, state: Mapping[str, Any]) -> None:
    for name, adapter in _adapters(type(aggregate)).items():
        if name in state:
            setattr(aggregate, name, adapter.validate_python(state[name]))


@dataclass(frozen=True)
class Snapshot:
    stream_id: str
    aggregate: str
    schema_version: int
    version: int
    state: dict[str, Any]

    def fits(self, aggregate_type: type[Aggregate]) -> bool:
        return (
            self.aggregate == aggregate_type.__name__
            and self.schema_version == aggregate_type.SCHEMA_VERSION
        )


class SnapshotStore:
    """Snapshots in MongoDB, one document per stream (the newest wins)."""

    def __init__(self, database: Database[Document]) -> None:
        self.collection = database[SNAPSHOTS]

    def get_many(self, stream_ids: list[str]) -> dict[str, Snapshot]:
        if not stream_ids:
            return {}
        docs = self.collection.find({"_id": {"$in": stream_ids}})
        return {doc["_id"]: _snapshot(doc) for doc in docs}

    def get(self, stream_id: str) -> Snapshot | None:
        return self.get_many([stream_id]).get(stream_id)

    def save(self, aggregate: Aggregate, version: int) -> bool:
        """Store ``aggregate``'s state as of ``version`` unless a newer fitting one is there."""
        state = state_of(aggregate)
        if state is None:
            return False
        kind = type(aggregate)
        doc = {
            "aggregate": kind.__name__,
            "schema_version": kind.SCHEMA_VERSION,
            "version": version,
            "state": state,
            "taken_at": datetime.now(UTC),
        }
        # Each filter sits beside ``_id`` alone, so each write is a point lookup.
        older = {"_id": aggregate.stream_id, "version": {"$lt": version}}
        try:
            self.collection.update_one(older, {"$set": doc}, upsert=True)
        except DuplicateKeyError:  # one at least as new is there: kept, unless of another schema
            other = {"_id": aggregate.stream_id, "schema_version": {"$ne": kind.SCHEMA_VERSION}}
            return self.collection.update_one(other, {"$set": doc}).matched_count == 1
        return True


def _snapshot(doc: Document) -> Snapshot:
    return Snapshot(
        doc["_id"], doc["aggregate"], doc["schema_version"], doc["version"], doc["state"]
    )


def load(
    aggregate_type: type[A],
    stream_id: str,
    snapshot: Snapshot | None,
    commits: list[Commit] | None,
    read: Any,
) -> A:
    """The aggregate from ``snapshot`` (if it fits) and the commits after it.

    ``commits`` are those after the snapshot's version (or the whole stream without one),
    when already fetched; ``read(stream_id, after_version)`` fetches them otherwise.
    """
    if snapshot is not None and not snapshot.fits(aggregate_type):
        snapshot, commits = None, None  # another schema: fold the whole stream
    aggregate = aggregate_type(stream_id)
    if snapshot is not None:
        restore(aggregate, snapshot.state)
        aggregate.version = aggregate.snapshot_version = snapshot.version
    if commits is None:
        commits = read(stream_id, aggregate.version)
    aggregate.apply_commits(commits)
    return aggregate


def is_due(aggregate_type: type[Aggregate], before: int, after: int) -> bool:
    """Whether going from version ``before`` to ``after`` crosses a multiple of N."""
    every = snapshot_every(aggregate_type)
    return every > 0 and after // every > before // every
