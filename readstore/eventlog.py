"""Read access to the event store's commits: streams for gap healing, history for rebuilds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pymongo.collection import Collection
from pymongo.database import Database

from messages import Event, registry
from readstore.db import Document

COMMITS = "commits"


def commit_id(stream_id: str, version_from: int) -> str:
    """A commit's ``_id``: the stream and the first version it holds, so a stream reads in order."""
    return f"{stream_id}@{version_from:010d}"


@dataclass(frozen=True)
class Commit:
    """One command's events, stored atomically as one document."""

    id: str
    stream_id: str
    version_from: int
    version: int
    events: tuple[Event, ...]
    command_id: str | None
    committed_at: datetime
    #: Marked sent by a release before dispatch receipts (``False`` on every newer commit).
    dispatched: bool

    @classmethod
    def from_document(cls, doc: Document) -> Commit:
        first = doc["version_from"]
        events = tuple(
            _decode_event(raw, doc["stream_id"], first + i) for i, raw in enumerate(doc["events"])
        )
        return cls(
            id=doc["_id"],
            stream_id=doc["stream_id"],
            version_from=first,
            version=doc["version"],
            events=events,
            command_id=doc.get("command_id"),
            committed_at=doc["committed_at"],
            dispatched=doc.get("dispatched", False),
        )


def _decode_event(raw: Document, stream_id: str, version: int) -> Event:
    event = registry.decode({**raw, "stream_id": stream_id, "stream_version": version})
    assert isinstance(event, Event)
    return event


def commits(database: Database[Document]) -> Collection[Document]:
    return database[COMMITS]


def read_commits(
    database: Database[Document], stream_id: str, after_version: int = 0
) -> list[Commit]:
    """The commits of ``stream_id`` holding versions after ``after_version``, in order.

    Equality on ``stream_id`` with a range on ``version`` (index ``stream_version``): a
    snapshot's tail reads only the commits after it, whatever the stream's length.
    """
    query = {"stream_id": stream_id, "version": {"$gt": after_version}}
    cursor = commits(database).find(query).sort("version", 1)
    return [Commit.from_document(doc) for doc in cursor]


def read_stream(
    database: Database[Document], stream_id: str, first: int = 1, last: int | None = None
) -> list[Event]:
    """The events of ``stream_id`` with versions ``first`` to ``last`` (inclusive), in order."""
    upper = last if last is not None else float("inf")
    return [
        event
        for commit in read_commits(database, stream_id, first - 1)
        for event in commit.events
        if first <= (event.stream_version or 0) <= upper
    ]


def stream_version(database: Database[Document], stream_id: str) -> int:
    """The current version of ``stream_id`` (0 when it does not exist)."""
    doc = commits(database).find_one(
        {"stream_id": stream_id}, {"version": 1}, sort=[("version", -1)]
    )
    return int(doc["version"]) if doc else 0


def iter_commits(database: Database[Document], batch_size: int = 500) -> Iterator[Commit]:
    """Every commit in the store, stream by stream (each stream in version order)."""
    for doc in commits(database).find({}).sort("_id", 1).batch_size(batch_size):
        yield Commit.from_document(doc)
