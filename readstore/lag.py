"""How far a projection is behind the event store: events committed but not yet applied.

Per followed stream, the store's version against the position the read model recorded for
it; summed over streams. It reads every commit that holds an event the projection handles
and the whole read model, so it is an operator's command, not something for a hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.database import Database

from messages import Event
from readstore.db import Document
from readstore.eventlog import Commit, commits
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


def stream_versions(database: Database[Document]) -> dict[str, int]:
    pipeline = [{"$group": {"_id": "$stream_id", "version": {"$max": "$version"}}}]
    return {doc["_id"]: int(doc["version"]) for doc in commits(database).aggregate(pipeline)}


def _first_handled(projection: Projection, doc: Document) -> Event | None:
    for event in Commit.from_document(doc).events:
        if isinstance(event, projection.handles):
            return event
    return None


def projection_lag(projection: Projection) -> Lag:
    """The events ``projection``'s collection has applied, against those committed."""
    database = projection.database
    versions = stream_versions(database)
    model = {doc["_id"]: doc for doc in projection.collection.find()}
    names = [t.type_name() for t in projection.handles]
    seen: set[str] = set()
    applied = committed = 0
    for doc in commits(database).find({"events.type": {"$in": names}}).sort("_id", 1):
        if doc["stream_id"] in seen:
            continue
        event = _first_handled(projection, doc)
        if event is None:
            continue
        seen.add(doc["stream_id"])
        doc_id, path = projection.locate(event)
        applied += int(dig(model.get(doc_id) or {}, path) or 0)
        committed += versions[doc["stream_id"]]
    return Lag(len(seen), committed, applied)
