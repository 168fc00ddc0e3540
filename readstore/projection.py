"""Projections: read models that are idempotent and per-stream ordered by construction.

Every projection declares the streams it follows (``follows``, see ``readstore.follows``);
each document records, for each stream it follows, the last stream version it applied (its
*position*). An event is applied with one conditional update whose filter is "position ==
version - 1" and whose update carries both the change and the new position, so a redelivered
or older event matches nothing (a no-op), and the write and its proof cannot part. An event
that arrives ahead of its predecessors heals the gap: the missing events are read from the
event store and applied in order first. An event may change other documents too
(``readstore.linked``): its ``steps`` are then several conditional updates, run in order in
one bulk write (``readstore.steps``), and a redelivery that finds its event applied
finishes what an interrupted apply left (``settle``).

Parking: when an event fails for good, its stream is *parked* for this projection (a document
in ``parked_streams``). Later events of that stream find a gap, see the parking (the only
extra read, and only off the hot path) and are held: acknowledged unapplied, since the event
store keeps them. Other streams flow. Applying the blocking event under ``releasing()`` (a
replay) applies the held events in order from the event store and lifts the parking.

While a rebuild runs, every event applied live is applied to its new collections too (see
``readstore.lease``), so the swap loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar

from pymongo.collection import Collection
from pymongo.database import Database

from messages import Event
from readstore.batch import apply_batch
from readstore.db import Document, get_database
from readstore.documents import Documents, FoldedDocuments, StoredDocuments
from readstore.eventlog import read_stream
from readstore.follows import Follow, Place, place
from readstore.lease import rebuild_targets
from readstore.memory import Memory
from readstore.mongo import dig
from readstore.steps import CREATE, REQUIRE, Step, plain

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


def is_releasing() -> bool:
    """Whether ``apply`` releases parked streams in the current context."""
    return _releasing.get()


def set_releasing(flag: bool) -> None:
    """Set for the current thread (a worker marks a replayed message's processing)."""
    _releasing.set(flag)


def parked_streams(database: Database[Document], collection: str | None = None) -> list[Document]:
    """The streams parked (for the projection writing ``collection``, or for every one)."""
    query = {} if collection is None else {"collection": collection}
    return list(database[PARKED].find(query))


class Projection:
    """A read model fed by events; subclasses declare what they follow and what changes."""

    #: The projection's name: its queue is ``projections.<name>``.
    name: ClassVar[str]
    #: The collection that serves queries.
    collection_name: ClassVar[str]
    #: Event types this projection applies (others in a followed stream only advance it).
    handles: ClassVar[tuple[type[Event], ...]]
    #: The kinds of stream it follows, where their documents are and their positions (a
    #: rebuild folds them kind after kind, in this order).
    follows: ClassVar[tuple[Follow, ...]]
    #: Fields kept for the writers' own checks, whose content depends on the order events
    #: were applied in (not on the log alone): ``verify`` leaves them out.
    unverified: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        database: Database[Document] | None = None,
        collection: str | None = None,
        *,
        memory: Memory | None = None,
    ) -> None:
        self.database = database if database is not None else get_database()
        self.collection: Collection[Document] = self.database[collection or self.collection_name]
        self.folding = memory is not None
        self.documents: Documents = (
            FoldedDocuments(memory) if memory is not None else StoredDocuments(self.database)
        )

    # -- what a subclass provides ------------------------------------------------------------
    def change(self, event: Event) -> Update:
        """The update operators that apply ``event`` (its position is added by the caller)."""
        raise NotImplementedError

    def steps(self, event: Event | None, where: Place) -> list[Step]:
        """The steps applying ``event`` at ``where`` (``None``: an event not handled here,
        which only advances the position): by default its one conditional update."""
        return [self.positioned(event, where)]

    def touched(self) -> list[Step]:
        """Steps run after the writes of a live apply, in the same bulk write."""
        return []

    def settle(self, where: Place, position: int) -> None:
        """A delivery found its stream at ``position``, at or past it: finish what an
        interrupted apply left undone (nothing, for an event applied by one update)."""

    def indexes(self) -> None:
        """Create the indexes queries need on this projection's collections."""

    # -- where things are --------------------------------------------------------------------
    def place(self, event: Event) -> Place:
        return place(self.follows, event, self.name)

    def collection_of(self, follow: Follow) -> str:
        base = self.collection.name
        return f"{base}_{follow.collection}" if follow.collection else base

    def collection_names(self) -> list[str]:
        """Every collection this projection writes, the serving one last."""
        sides = {self.collection_of(f) for f in self.follows if f.collection}
        return [*sorted(sides), self.collection.name]

    def is_live(self) -> bool:
        return not self.folding and self.collection.name == self.collection_name

    # -- the algorithm ---------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Apply ``event`` exactly once in effect; ``False`` when it was already applied
        (or is held behind a parked event). During a rebuild, to the new collections too."""
        if _releasing.get():
            return self.release(event)
        applied = self.apply_one(event)
        if self.is_live():
            for target in rebuild_targets(self.database, self.name):
                type(self)(self.database, collection=target).apply_one(event)
        return applied

    def apply_one(self, event: Event) -> bool:
        where = self.place(event)
        if self._apply_next(event, where):
            return True
        position = self.position(where)
        if position >= where.version:
            self.settle(where, position)  # a crash may have come amid its steps
            return False
        if self._held(event, where, position):
            return False  # held behind a parked event, or caught up past it meanwhile
        return self._bring(event, where, position)

    def _bring(self, event: Event, where: Place, position: int) -> bool:
        """Apply the stream's events after ``position``, then ``event``."""
        self._catch_up(where, position, where.version - 1)
        return self._apply_next(event, where)

    def _catch_up(self, where: Place, position: int, last: int | None = None) -> None:
        """Apply the stored events of ``where``'s stream after ``position`` (to ``last``)."""
        missing = read_stream(self.database, where.stream_id, position + 1, last)
        if last is None:  # to the stream's end: as live, up to its last handled event
            while missing and not isinstance(missing[-1], self.handles):
                missing.pop()
        skipped: list[Place] = []
        for event in missing:
            if not isinstance(event, self.handles):
                skipped.append(self.place(event))
                continue
            self._skip(skipped)
            skipped = []
            self._apply_next(event, self.place(event))
        self._skip(skipped)

    def _skip(self, skipped: list[Place]) -> None:
        """Move a stream's position over events not handled here, in one update."""
        if skipped:
            first, last = skipped[0], skipped[-1]
            step = self.positioned(None, first)
            step.update["$set"][first.follow.position] = last.version
            self.documents.run([step])

    def catch_up_stream(self, follow: Follow, key: str) -> None:
        """Bring the document of stream ``<type>-<key>`` level with the event store."""
        stream = follow.stream_id(key)
        where = Place(follow, key, stream, 0)
        self._catch_up(where, self.position(where))

    def _apply_next(self, event: Event | None, where: Place) -> bool:
        """Apply ``event`` if the document stands exactly one version before it (``None``:
        an event this projection does not handle, which only advances the position)."""
        live = self.touched() if self.is_live() else []
        return self.documents.run([*self.steps(event, where), *live])

    def positioned(self, event: Event | None, where: Place) -> Step:
        """The update of ``where``'s document applying ``event``: filtered on the position
        one version before, its change with the new position."""
        handled = event is not None and isinstance(event, self.handles)
        update = self.change(event) if event is not None and handled else {}
        position = where.follow.position
        update = {**update, "$set": {**update.get("$set", {}), position: where.version}}
        query: dict[str, Any] = {"_id": where.doc_id}
        query[position] = {"$exists": False} if where.version == 1 else where.version - 1
        kind = CREATE if where.version == 1 else REQUIRE
        order = (where.stream_id, where.version)
        fresh = where.version == 1 and where.follow.creates and plain(update)
        return Step(self.collection_of(where.follow), query, update, kind, order, fresh=fresh)

    def apply_batch(self, events: Sequence[Event]) -> list[bool | Exception]:
        """Apply ``events`` as ``apply`` would, with one bulk write per collection when
        they all apply in turn (see ``readstore.batch``); per event, whether it stands
        applied, or the error it failed with. During a rebuild, to the new collections too."""
        outcomes = apply_batch(self, events)
        if self.is_live():
            for target in rebuild_targets(self.database, self.name):
                built = apply_batch(type(self)(self.database, collection=target), events)
                outcomes = [_worse(o, b) for o, b in zip(outcomes, built, strict=True)]
        return outcomes

    def fold(self, where: Place, event: Event | None) -> bool:
        """Apply one logged event during a rebuild's fold (``None``: not handled here)."""
        return self._apply_next(event, where)

    def position(self, where: Place) -> int:
        path = where.follow.position
        doc = self.documents.find_one(self.collection_of(where.follow), where.doc_id, [path])
        return int(dig(doc, path) or 0) if doc else 0

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
        where = self.place(event)
        self._catch_up(where, self.position(where), where.version - 1)
        applied = self._apply_next(event, where)
        self.database[PARKED].delete_one({"_id": self._parked_id(where.stream_id)})
        self._catch_up(where, self.position(where))
        return applied

    def _held(self, event: Event, where: Place, position: int) -> bool:
        """Whether ``event`` needs no more work: it waits behind a parked event of its stream
        (and is counted), or the blocking event got applied meanwhile and the whole stream
        was just caught up."""
        if self.folding:
            return False
        parked_id = self._parked_id(where.stream_id)
        parked = self.database[PARKED].find_one({"_id": parked_id}, {"version": 1})
        if parked is None:
            return False
        if position >= parked["version"]:
            self.database[PARKED].delete_one({"_id": parked_id})
            self._catch_up(where, position)
            return True
        self.database[PARKED].update_one(
            {"_id": parked_id}, {"$inc": {"held": 1}, "$max": {"held_through": where.version}}
        )
        return True

    def _parked_id(self, stream_id: str) -> str:
        return f"{self.collection.name}:{stream_id}"


def _worse(live: bool | Exception, built: bool | Exception) -> bool | Exception:
    """The outcome of an event applied live and to a rebuild's collections: an error wins."""
    return built if isinstance(built, Exception) and not isinstance(live, Exception) else live
