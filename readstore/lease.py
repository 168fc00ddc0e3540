"""The rebuild lease: one rebuild per projection, and where live applies must also write.

A rebuild holds ``projection_rebuilds/<projection>`` (holder, since, expires_at, target).
A second rebuild is refused with the holder and since when, unless the lease expired (its
holder died without renewing). While the lease is held, live applies write each event to
the rebuild's collections as well; a process learns of a lease within ``REGISTRY_TTL``
seconds, and a rebuild waits that long before it reads the log.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from readstore.db import Document

REBUILDS = "projection_rebuilds"
#: How long a process trusts what it read about running rebuilds.
REGISTRY_TTL = 2.0
#: A lease not renewed for this long belongs to a dead holder.
LEASE_TTL = timedelta(seconds=30)

_cache: dict[str, tuple[float, dict[str, list[str]]]] = {}
_cache_lock = threading.Lock()


class RebuildRefused(RuntimeError):
    """Another rebuild of the projection holds the lease."""

    def __init__(self, projection: str, holder: str, since: datetime) -> None:
        super().__init__(
            f"a rebuild of {projection} is already running: held by {holder} "
            f"since {since:%Y-%m-%d %H:%M:%S} UTC"
        )
        self.holder, self.since = holder, since


@dataclass
class Lease:
    """A held rebuild lease."""

    database: Database[Document]
    projection: str
    holder: str
    target: str
    since: datetime

    def renew(self, ttl: timedelta = LEASE_TTL) -> None:
        """Extend the lease; ``RebuildRefused`` if another holder took it over meanwhile."""
        result = self.database[REBUILDS].update_one(
            {"_id": self.projection, "holder": self.holder},
            {"$set": {"expires_at": datetime.now(UTC) + ttl}},
        )
        if result.matched_count == 0:
            raise RebuildRefused(self.projection, "another process", self.since)

    def note(self, **fields: object) -> None:
        """Record progress on the lease (phase, counts) for ``projections list``."""
        self.database[REBUILDS].update_one(
            {"_id": self.projection, "holder": self.holder}, {"$set": fields}
        )

    def release(self, **outcome: object) -> None:
        """Give the lease up, keeping the outcome for ``projections list``."""
        self.database[REBUILDS].update_one(
            {"_id": self.projection, "holder": self.holder},
            {
                "$set": {**outcome, "phase": "done", "finished_at": datetime.now(UTC)},
                "$unset": {"expires_at": "", "target": ""},
            },
        )


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def acquire(
    database: Database[Document], projection: str, target: str, ttl: timedelta = LEASE_TTL
) -> Lease:
    """Take the rebuild lease of ``projection``; ``RebuildRefused`` while another holds it."""
    now, holder = datetime.now(UTC), holder_name()
    fields = {"holder": holder, "since": now, "expires_at": now + ttl, "target": target}
    # Lapsed or never set; beside ``_id``, so the write stays a point lookup.
    free = {"_id": projection, "expires_at": {"$not": {"$gte": now}}}
    try:
        taken = database[REBUILDS].update_one(
            free, {"$set": {**fields, "phase": "starting"}}, upsert=True
        )
    except DuplicateKeyError:
        taken = None
    if taken is None or (taken.matched_count == 0 and taken.upserted_id is None):
        current = database[REBUILDS].find_one({"_id": projection}) or {}
        raise RebuildRefused(projection, current.get("holder", "?"), current.get("since", now))
    return Lease(database, projection, holder, target, now)


def abandoned_target(database: Database[Document], projection: str) -> str | None:
    """The collection a dead holder was building (to drop before a new rebuild)."""
    doc = database[REBUILDS].find_one({"_id": projection}, {"target": 1})
    return doc.get("target") if doc else None


def rebuild_targets(database: Database[Document], projection: str) -> list[str]:
    """The collections a running rebuild of ``projection`` builds. One read of every running
    rebuild serves all projections of the process for ``REGISTRY_TTL``."""
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(database.name)
    if cached is None or now - cached[0] >= REGISTRY_TTL:
        running = database[REBUILDS].find({"expires_at": {"$gt": datetime.now(UTC)}}, {"target": 1})
        cached = (now, {doc["_id"]: [doc["target"]] for doc in running if doc.get("target")})
        with _cache_lock:
            _cache[database.name] = cached
    return cached[1].get(projection, [])
