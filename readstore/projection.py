"""Projections: read models that are idempotent and per-stream ordered by construction.

Every read-model document records, for each stream it follows, the last stream version it
applied (its *position*). An event is applied with one conditional update whose filter is
"position == version - 1" and whose update carries both the change and the new position, so
a redelivered or older event matches nothing (a no-op), and the write and its proof cannot
part. An event that arrives ahead of its predecessors heals the gap: the missing events are
read from the event store and applied in order first.

Parking: when an event fails for good, its stream is *parked* for this projection (a document
in ``parked_streams``). Later events of that stream find a gap, see the parking (the only
extra read, and only off the hot path) and are held: acknowledged unapplied, since the event
store keeps them. Other streams flow. Applying the blocking event under ``releasing()`` (a
replay) applies the held events in order from the event store and lifts the parking.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from messages import Event
from messages.errors import UnplaceableEvent
from readstore.db import Document, get_database
from readstore.eventlog import read_stream
from readstore.mongo import dig

Update = dict[str, dict[str, Any]]

PARKED = "parked_streams"
_releasing: ContextVar[bool] = ContextVar("sagaworks_releasing", default=False)


@contextmanager
def releasing() -> Iterator[None]:
    """Within this block ``apply`` also releases the event's stream if it is parked."""
    token = _releasing.set(True)
    try:
        yield
    finally:
        _releasing.reset(token)


def set_releasing(flag: bool) -> None:
    """Set for the current thread (a worker marks a replayed message's processing)."""
    _releasing.set(flag)


def parked_streams(database: Database[Document], collection: str | None = None) -> list[Document]:
    """The streams parked (for the projection writing ``collection``, or for every one)."""
    query = {} if collection is None else {"collection": collection}
    return list(database[PARKED].find(query))


class Projection:
    """A read model fed by events; subclasses say where an event lands and what it changes."""

    #: The projection's name: its queue is ``projections.<name>``.
    name: ClassVar[str]
    #: The collection that serves queries.
    collection_name: ClassVar[str]
    #: Event types this projection applies (others in a followed stream only advance it).
    handles: ClassVar[tuple[type[Event], ...]]

    def __init__(
        self, database: Database[Document] | None = None, collection: str | None = None
    ) -> None:
        self.database = database if database is not None else get_database()
        self.collection: Collection[Document] = self.database[collection or self.collection_name]

    # -- what a subclass provides ------------------------------------------------------------
    def locate(self, event: Event) -> tuple[Any, str]:
        """The document ``_id`` and the position path this event's stream advances."""
        raise NotImplementedError

    def change(self, event: Event) -> Update:
        """The update operators that apply ``event`` (its position is added by the caller)."""
        raise NotImplementedError

    def indexes(self) -> None:
        """Create the indexes queries need on ``self.collection``."""

    # -- the algorithm ---------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Apply ``event`` exactly once in effect; ``False`` when it was already applied
        (or is held behind a parked event)."""
        if _releasing.get():
            return self.release(event)
        if self._apply_next(event):
            return True
        doc_id, path = self.locate(event)
        version = _version(event)
        position = self.position(doc_id, path)
        if position >= version or self._held(event, position):
            return False  # applied already, held behind a parked event, or caught up past it
        self._catch_up(event, position, version - 1)
        return self._apply_next(event)

    def _catch_up(self, event: Event, position: int, last: int | None = None) -> None:
        """Apply the stored events of ``event``'s stream after ``position`` (to ``last``)."""
        for missing in read_stream(self.database, _stream(event), position + 1, last):
            self._apply_next(missing)

    # -- parking ---------------------------------------------------------------------------------
    def park(self, stream_id: str, version: int, dead_letter: str) -> None:
        """Event ``version`` of ``stream_id`` failed for good: hold the stream's later events."""
        self.database[PARKED].update_one(
            {"_id": self._parked_id(stream_id)},
            {
                "$min": {"version": version},
                "$max": {"held_through": version},
                "$addToSet": {"dead_letters": dead_letter},
                "$setOnInsert": {
                    "projection": self.name,
                    "collection": self.collection.name,
                    "stream_id": stream_id,
                    "since": datetime.now(UTC),
                    "held": 0,
                },
            },
            upsert=True,
        )

    def release(self, event: Event) -> bool:
        """Apply ``event`` and, after it, the events its parking held; lift the parking."""
        doc_id, path = self.locate(event)
        version = _version(event)
        self._catch_up(event, self.position(doc_id, path), version - 1)
        applied = self._apply_next(event)
        self.database[PARKED].delete_one({"_id": self._parked_id(_stream(event))})
        self._catch_up(event, self.position(doc_id, path))
        return applied

    def _held(self, event: Event, position: int) -> bool:
        """Whether ``event`` needs no more work: it waits behind a parked event of its stream
        (and is counted), or the blocking event got applied meanwhile and the whole stream
        was just caught up."""
        parked_id = self._parked_id(_stream(event))
        parked = self.database[PARKED].find_one({"_id": parked_id}, {"version": 1})
        if parked is None:
            return False
        if position >= parked["version"]:
            self.database[PARKED].delete_one({"_id": parked_id})
            self._catch_up(event, position)
            return True
        self.database[PARKED].update_one(
            {"_id": parked_id}, {"$inc": {"held": 1}, "$max": {"held_through": _version(event)}}
        )
        return True

    def _parked_id(self, stream_id: str) -> str:
        return f"{self.collection.name}:{stream_id}"

    def position(self, doc_id: Any, path: str) -> int:
        doc = self.collection.find_one({"_id": doc_id}, {path: 1})
        return int(dig(doc, path) or 0) if doc else 0

    def _apply_next(self, event: Event) -> bool:
        """Apply ``event`` if the document stands exactly one version before it."""
        doc_id, path = self.locate(event)
        version = _version(event)
        update = self.change(event) if isinstance(event, self.handles) else {}
        update = {**update, "$set": {**update.get("$set", {}), path: version}}
        if version == 1:
            try:
                result = self.collection.update_one(
                    {"_id": doc_id, path: {"$exists": False}}, update, upsert=True
                )
            except DuplicateKeyError:
                return False  # the document exists and has this stream: applied already
            return result.upserted_id is not None or result.modified_count == 1
        result = self.collection.update_one({"_id": doc_id, path: version - 1}, update)
        return result.modified_count == 1


def _version(event: Event) -> int:
    if event.stream_version is None:
        raise UnplaceableEvent(f"{event.type_name()} {event.message_id} has no stream version")
    return event.stream_version


def _stream(event: Event) -> str:
    assert event.stream_id is not None
    return event.stream_id
