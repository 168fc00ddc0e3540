"""Applying several events of one projection with one bulk write per collection.

Live delivery applies an event with one conditional update (``Projection.apply``). When
several events of a projection wait at once, ``apply_batch`` sends the same conditional
updates (change and new position, filtered on the position one version before) as one
ordered ``bulk_write`` per collection, in stream and version order, so consecutive versions
of one document in a batch apply in turn. When every update matched, every event was
applied, in one round trip per collection. Otherwise the positions of those documents are
read once: an event whose document stands at or past its version is applied (now or
before; its effects are re-run, as for a redelivery), and any other goes through
``apply_one`` on its own (gap healing, parking). An event that cannot be placed, or fails
on its own, is that event's error only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from messages import Event
from messages.errors import PermanentError
from readstore.db import Document
from readstore.follows import Place
from readstore.mongo import dig

if TYPE_CHECKING:
    from readstore.projection import Projection

#: An update as the apply algorithm makes it: collection, filter, change, insert if missing.
Conditional = tuple[str, dict[str, Any], dict[str, Any], bool]
Outcome = bool | Exception
DUPLICATE_KEY = 11000


def apply_batch(projection: Projection, events: Sequence[Event]) -> list[Outcome]:
    """Apply ``events`` to ``projection``'s documents. Per event: ``True`` when its document
    stands at or past it (applied by this batch; or, when not all of the batch matched,
    perhaps before it), ``False`` when applied alone it was found applied or held, or its
    error."""
    outcomes: list[Outcome] = [False] * len(events)
    by_collection: dict[str, list[tuple[int, Place]]] = defaultdict(list)
    for i, event in enumerate(events):
        try:
            where = projection.place(event)
        except PermanentError as exc:
            outcomes[i] = exc
            continue
        by_collection[projection.collection_of(where.follow)].append((i, where))
    applied: list[int] = []
    for name, placed in by_collection.items():
        applied += _write(projection, name, events, placed)
    for i in applied:
        outcomes[i] = True
    projection.propagate_batch([events[i] for i in _in_stream_order(events, applied)])
    rest = [i for i, o in enumerate(outcomes) if o is False]
    for i in _in_stream_order(events, rest):
        outcomes[i] = _alone(projection, events[i])
    return outcomes


def _write(
    projection: Projection, name: str, events: Sequence[Event], placed: list[tuple[int, Place]]
) -> list[int]:
    """Write the ``placed`` events to collection ``name``; the indexes of those now applied
    (an event not among them was applied neither by this write nor before it)."""
    placed = sorted(placed, key=lambda item: (item[1].stream_id, item[1].version))
    updates = [projection.conditional(events[i], where) for i, where in placed]
    ops = [UpdateOne(query, update, upsert=upsert) for _, query, update, upsert in updates]
    collection = projection.database[name]
    if _bulk(collection, ops) == len(ops):
        return [i for i, _ in placed]
    ids = list({where.doc_id for _, where in placed})
    stands = {doc["_id"]: doc for doc in collection.find({"_id": {"$in": ids}})}
    return [i for i, where in placed if _position(stands.get(where.doc_id), where) >= where.version]


def _position(doc: Document | None, where: Place) -> int:
    return int(dig(doc, where.follow.position) or 0) if doc else 0


def _in_stream_order(events: Sequence[Event], indexes: list[int]) -> list[int]:
    return sorted(indexes, key=lambda i: (str(events[i].stream_id), events[i].stream_version or 0))


def _bulk(collection: Collection[Document], ops: list[UpdateOne]) -> int:
    """Run ``ops`` in order; how many matched or inserted. An insert that meets an existing
    ``_id`` (a first event applied already) is not applied; the ops after it run next."""
    done = 0
    while ops:
        try:
            result = collection.bulk_write(ops, ordered=True)
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if len(errors) != 1 or errors[0]["code"] != DUPLICATE_KEY:
                raise
            error = errors[0]
            done += exc.details["nMatched"] + exc.details["nUpserted"]
            ops = ops[error["index"] + 1 :]
            continue
        return done + result.matched_count + result.upserted_count
    return done


def _alone(projection: Projection, event: Event) -> Outcome:
    """``event`` applied on its own, as a single delivery would be."""
    try:
        return projection.apply_one(event)
    except Exception as exc:  # this event's failure, not the batch's
        return exc
