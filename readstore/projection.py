"""Projections: read models that are idempotent and per-stream ordered by construction.

Every read-model document records, for each stream it follows, the last stream version it
applied (its *position*). An event is applied with one conditional update whose filter is
"position == version - 1" and whose update carries both the change and the new position, so
a redelivered or older event matches nothing (a no-op), and the write and its proof cannot
part. An event that arrives ahead of its predecessors heals the gap: the missing events are
read from the event store and applied in order first.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from messages import Event
from readstore.db import Document, get_database
from readstore.eventlog import read_stream
from readstore.mongo import dig

Update = dict[str, dict[str, Any]]


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
        """Apply ``event`` exactly once in effect; ``False`` when it was already applied."""
        if self._apply_next(event):
            return True
        doc_id, path = self.locate(event)
        version = _version(event)
        position = self.position(doc_id, path)
        if position >= version:
            return False
        for missing in read_stream(self.database, _stream(event), position + 1, version - 1):
            self._apply_next(missing)
        return self._apply_next(event)

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
        raise ValueError(f"{event.type_name()} {event.message_id} has no stream version")
    return event.stream_version


def _stream(event: Event) -> str:
    assert event.stream_id is not None
    return event.stream_id
