"""What a projection follows: kinds of stream, the document each stream lands in, its position.

A projection declares once, as a tuple of ``Follow``, which streams feed it. Live apply,
lag and rebuild all place an event with ``place``: the event's stream type picks the
declaration, the stream's key (the id after ``<type>-``) is the document's ``_id``, and the
declaration's ``position`` is the field recording the last stream version applied there.
An event on a stream the projection does not follow cannot be placed: a permanent error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from messages import Event
from messages.errors import UnplaceableEvent


@dataclass(frozen=True)
class Follow:
    """Streams ``<stream_type>-<key>`` feed document ``<key>``, position in field ``position``.

    ``collection`` names a side collection (``<model>_<collection>``) for streams whose
    documents are not the model's own (e.g. one document per order next to the customer's).
    ``creates``: as a rule the stream's first event finds no document and creates it (no
    other stream writes there first), so a batch may send that write as a plain insert
    (``readstore.steps.insert_new``).
    """

    stream_type: str
    position: str = "_version"
    collection: str = ""
    creates: bool = False

    def stream_id(self, key: str) -> str:
        return f"{self.stream_type}-{key}"


@dataclass(frozen=True)
class Place:
    """Where one event lands: the declaration, the document ``_id``, and the stream."""

    follow: Follow
    doc_id: str
    stream_id: str
    version: int


def stream_range(kind: str) -> dict[str, str]:
    """The ``stream_id`` range holding every stream of type ``kind`` (``<kind>-…``)."""
    return {"$gt": f"{kind}-", "$lt": f"{kind}."}


def place(follows: Iterable[Follow], event: Event, projection: str) -> Place:
    """Where ``event`` lands in ``projection``; ``UnplaceableEvent`` when it cannot."""
    stream_id, version = event.stream_id, event.stream_version
    if stream_id is None or version is None:
        raise UnplaceableEvent(
            f"{projection}: {event.type_name()} {event.message_id} has no stream position"
        )
    found = place_stream(follows, stream_id, version)
    if found is None:
        raise UnplaceableEvent(
            f"{projection}: {event.type_name()} is on stream {stream_id!r}, "
            f"a kind of stream it does not follow"
        )
    return found


def place_stream(follows: Iterable[Follow], stream_id: str, version: int) -> Place | None:
    """Where version ``version`` of ``stream_id`` lands; ``None`` if it is not followed."""
    kind, _, key = stream_id.partition("-")
    for follow in follows:
        if follow.stream_type == kind and key:
            return Place(follow, key, stream_id, version)
    return None
