"""Projections whose streams also add up into shared documents, in one write per event.

A *linked* kind of stream (an order's, for a customer's profile; an order's reservation,
for the SKUs' levels) has a document of its own per stream (the *gate*: the stream's
position, for good) and changes *totals* documents that sum many such streams (a
customer's profile, a SKU's level). Each totals document carries, for every linked stream
still open on it, an *entry*: the last version of that stream whose change it holds. So
both the gate and the entry are per-stream positions, and every change is a conditional
update on its own document; they go to the store as one ordered bulk write (the steps of
``readstore.steps``), gate and totals in one collection:

- version 1: the gate is created (a miss: the stream was seen before, and nothing runs),
  then each totals document takes the change with its entry, created at 1;
- version n > 1: each totals document takes the change if its entry stands at n - 1,
  then the gate moves from n - 1 to n;
- the stream's last event (``final``) then drops its entries: a totals document does not
  grow with history. A late copy of any event finds the gate past it and changes nothing.
  A drop also puts the stream among the document's last ``KEPT_ENDED`` ended streams
  (``_ended``), and a first change requires its stream not there: an entry dropped and an
  entry never made then read differently on the document itself. Without it a writer that
  found the gate unchanged, and then the entry absent, could not tell whether another
  writer had meanwhile applied the whole stream and dropped it (the step just before
  guards the gate, but another writer's bulk may run between two steps of one bulk).

An apply interrupted between its steps (a crash; a miss) is finished by the next delivery
of any of the stream's events: it reads the stream from the event store, the gate and the
entries, and runs the steps still missing behind a step that requires the gate unchanged
(``repair``). The order of the steps makes every state readable: an entry at n with the
gate at n - 1 is a change applied whose gate did not move yet; no entry with the gate at 1
is a first change that never landed; no entry past the final event is a dropped one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from messages import Event
from messages.errors import ConcurrencyError
from readstore.eventlog import read_stream
from readstore.follows import Follow, Place
from readstore.projection import Projection, Update
from readstore.steps import CREATE, MAYBE, REQUIRE, Step

#: Reads and writes a repair tries before it leaves the event to its retries.
ATTEMPTS = 3
#: A totals document's last ended streams, in the order they ended (see the module docstring).
ENDED = "_ended"
#: How many: far more than can end on one document between two steps of one bulk write.
KEPT_ENDED = 16
Totals = list[tuple[str, Update]]


class Linked(Projection):
    """A projection with one linked kind of stream; see the module docstring."""

    #: The linked kind of stream (its documents are the gates).
    linked: ClassVar[Follow]
    #: The field of a totals document holding its entries, by the linked stream's key.
    entries: ClassVar[str]
    #: The last ended streams follow the order of the drops, which a rebuild does not repeat.
    unverified: ClassVar[frozenset[str]] = frozenset({ENDED})

    # -- what a subclass provides ------------------------------------------------------------
    def totals(self, event: Event) -> Totals:
        """The totals documents ``event`` changes: (``_id``, update operators)."""
        return []

    def final(self, event: Event) -> bool:
        """Whether ``event`` is the last of its stream to change totals."""
        return False

    # -- steps -----------------------------------------------------------------------------------
    def steps(self, event: Event | None, where: Place) -> list[Step]:
        if where.follow != self.linked:
            return super().steps(event, where)
        gate = self.positioned(event, where)
        changes = [self._total(where, doc, update) for doc, update in self._totals(event)]
        done = self._drops(event, where)
        return [gate, *changes, *done] if where.version == 1 else [*changes, gate, *done]

    def _totals(self, event: Event | None) -> Totals:
        return self.totals(event) if isinstance(event, self.handles) else []

    def _entry(self, where: Place) -> str:
        return f"{self.entries}.{where.doc_id}"

    def _total(self, where: Place, doc: str, update: Update) -> Step:
        """``update`` of totals document ``doc``, with its entry moved to ``where``'s version."""
        entry, version = self._entry(where), where.version
        update = {**update, "$set": {**update.get("$set", {}), entry: version}}
        if version > 1:
            return Step(self.collection.name, {"_id": doc, entry: version - 1}, update, REQUIRE)
        unmade = {"_id": doc, entry: {"$exists": False}, ENDED: {"$ne": str(where.doc_id)}}
        return Step(self.collection.name, unmade, update, CREATE)

    def _drops(self, event: Event | None, where: Place) -> list[Step]:
        """After the stream's final event: its entries dropped."""
        if event is None or not self.final(event) or where.version == 1:
            return []
        entry = self._entry(where)
        query = {entry: where.version}
        ended = {"$each": [str(where.doc_id)], "$slice": -KEPT_ENDED}
        update = {"$unset": {entry: ""}, "$push": {ENDED: ended}}
        return [
            Step(self.collection.name, {"_id": doc, **query}, update, MAYBE)
            for doc, _ in self._totals(event)
        ]

    # -- finishing an interrupted apply ----------------------------------------------------------
    def settle(self, where: Place, position: int) -> None:
        if where.follow == self.linked and not self.folding:
            self.repair(where, position)

    def _bring(self, event: Event, where: Place, position: int) -> bool:
        if where.follow != self.linked:
            return super()._bring(event, where, position)
        self.repair(where, where.version)
        return True

    def repair(self, where: Place, target: int) -> None:
        """Bring the gate and totals of ``where``'s stream to version ``target``."""
        for _ in range(ATTEMPTS):
            events = read_stream(self.database, where.stream_id, 1, target)
            steps = self._missing(where, events)
            if not steps or self.documents.run(steps):
                return
        raise ConcurrencyError(f"{self.name}: {where.stream_id} kept changing while repaired")

    def _missing(self, where: Place, events: Sequence[Event]) -> list[Step]:
        """The steps that bring the stream to its last event in ``events``, as read now,
        behind one that requires the gate where it was read; none if nothing is missing."""
        gate = self.position(where)
        docs = {doc for event in events for doc, _ in self._totals(event)}
        stands = self._entries(where, docs)
        ended = any(self.final(e) and (e.stream_version or 0) <= gate for e in events[1:])
        steps: list[Step] = []
        for event in events:
            at = Place(where.follow, where.doc_id, where.stream_id, event.stream_version or 0)
            steps += self._still(event, at, gate, stands, ended)
        if not steps:  # tidying alone (an entry a cut left undropped) is still run
            return []
        return [self._unchanged(where, gate), *steps] if gate else steps

    def _still(
        self, event: Event, at: Place, gate: int, stands: dict[str, int | None], ended: bool
    ) -> list[Step]:
        """The steps of ``event`` (at ``at``) not yet applied."""
        changes = [
            self._total(at, doc, update)
            for doc, update in self._totals(event)
            if not ended and (stands.get(doc) or 0) < at.version
        ]
        moved = [] if gate >= at.version else [self.positioned(event, at)]
        held = {s.query["_id"] for s in changes} | {d for d, e in stands.items() if e is not None}
        done = [s for s in self._drops(event, at) if s.query["_id"] in held]
        return [*moved, *changes, *done] if at.version == 1 else [*changes, *moved, *done]

    def _entries(self, where: Place, docs: set[str]) -> dict[str, int | None]:
        """Each totals document's entry for ``where``'s stream (``None``: it has none)."""
        found = {doc: self.documents.find_one(self.collection.name, doc) for doc in docs}
        key = str(where.doc_id)
        return {doc: (d or {}).get(self.entries, {}).get(key) for doc, d in found.items()}

    def _unchanged(self, where: Place, gate: int) -> Step:
        """A step that misses unless the gate still stands at ``gate``."""
        position = where.follow.position
        query: dict[str, Any] = {"_id": where.doc_id, position: gate}
        return Step(self.collection.name, query, {"$set": {position: gate}}, REQUIRE)
