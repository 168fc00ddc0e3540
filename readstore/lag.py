"""How far a projection is behind the event store: events committed but not yet applied.

Per stream the projection follows (its ``follows`` declaration: the same placing as live
apply and rebuild), the version of the stream's last event it handles against the position
its document recorded; summed over streams. It reads the commits holding handled events and
the positions of the model, so it is an operator's command, not something for a hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from readstore.db import Document
from readstore.eventlog import commits
from readstore.follows import Follow, stream_range
from readstore.mongo import dig
from readstore.projection import Projection


@dataclass(frozen=True)
class Lag:
    streams: int
    committed: int
    applied: int

    @property
    def behind(self) -> int:
        return max(self.committed - self.applied, 0)


def stream_versions(
    database: Database[Document],
    follow: Follow,
    types: list[str],
    streams: list[str] | None = None,
) -> dict[str, int]:
    """Per stream of ``follow``'s kind (or per stream of ``streams`` only), the version of its
    last commit holding ``types``."""
    where = {"$in": streams} if streams is not None else stream_range(follow.stream_type)
    pipeline: list[dict[str, Any]] = [
        {"$match": {"stream_id": where, "events.type": {"$in": types}}},
        {"$group": {"_id": "$stream_id", "version": {"$max": "$version"}}},
    ]
    return {doc["_id"]: int(doc["version"]) for doc in commits(database).aggregate(pipeline)}


def positions(projection: Projection, follow: Follow, sample: int | None = None) -> dict[str, int]:
    """Per document of ``follow``'s collection, the position it recorded for that stream
    (of the first ``sample`` documents only, when given)."""
    collection = projection.database[projection.collection_of(follow)]
    docs = collection.find({follow.position: {"$exists": True}}, {follow.position: 1})
    return {str(d["_id"]): int(dig(d, follow.position) or 0) for d in docs.limit(sample or 0)}


def projection_lag(projection: Projection, sample: int | None = None) -> Lag:
    """The events ``projection``'s collections have applied, against those committed; with
    ``sample``, measured on the streams of that many of its documents per stream kind only
    (a check that the measure works, not the measure: the store's range reads are not)."""
    names = [t.type_name() for t in projection.handles]
    streams = committed = applied = 0
    for follow in projection.follows:
        seen = positions(projection, follow, sample)
        some = [follow.stream_id(key) for key in seen] if sample else None
        versions = stream_versions(projection.database, follow, names, some)
        prefix = len(follow.stream_type) + 1
        for stream_id, version in versions.items():
            streams += 1
            committed += version
            applied += min(seen.get(stream_id[prefix:], 0), version)
    return Lag(streams, committed, applied)
