"""A per-process cache of aggregates, checked by the event store on every append.

A command handler that finds its aggregate here decides on it without reading the stream;
the append is the check: a commit's ``_id`` is ``<stream>@<first version>``, so a cached
copy that another writer has moved past collides with that writer's commit, the command is
refused a ``ConcurrencyError``, the entry is dropped, and the next attempt reads the stream.
A decision that appends nothing (a no-op, a rejection) is not checked that way, so the
pipeline takes it again on a fresh read before answering (``workers.write.commands``).

Streams a command only reads (the customer of ``PlaceOrder``) are checked by no append:
their entries serve only while younger than ``RELATED_SECONDS``, so a command sees a change
to them at most that long after it was committed. Nothing else depends on the cache: an
empty one (a new process, another worker) only costs the reads it saves. It trusts that an
acknowledged commit is durable (writes are ``w=majority, j=True``): a store restored from
an older backup needs the workers restarted.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from typing import TypeVar

from pymongo.database import Database

from readstore.db import Document
from workers.write.aggregates import Aggregate

A = TypeVar("A", bound=Aggregate)
#: How long a stream a command only reads may be served from the cache.
RELATED_SECONDS = 30.0
Key = tuple[int, str, str]


class AggregateCache:
    """The last state this process saw of each stream, by database; bounded, least recent out."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, tuple[Aggregate, float]] = OrderedDict()

    def get(
        self,
        database: Database[Document],
        aggregate_type: type[A],
        stream_id: str,
        max_age: float | None = None,
    ) -> A | None:
        """A copy of the state cached for ``stream_id``; ``None``: none, or too old."""
        with self._lock:
            entry = self._entries.get(_key(database, stream_id))
        if entry is None or type(entry[0]) is not aggregate_type:
            return None
        if max_age is not None and time.monotonic() - entry[1] > max_age:
            return None
        return _copy(entry[0])  # type: ignore[return-value]  # its type was checked above

    def has(self, database: Database[Document], stream_id: str, max_age: float | None) -> bool:
        with self._lock:
            entry = self._entries.get(_key(database, stream_id))
        return entry is not None and (max_age is None or time.monotonic() - entry[1] <= max_age)

    def put(self, database: Database[Document], aggregate: Aggregate) -> None:
        """Remember ``aggregate`` as of its ``version`` (a stream that exists only)."""
        if not aggregate.exists:
            return
        key = _key(database, aggregate.stream_id)
        with self._lock:
            self._entries[key] = (_copy(aggregate), time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, database: Database[Document], stream_id: str) -> None:
        with self._lock:
            self._entries.pop(_key(database, stream_id), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _key(database: Database[Document], stream_id: str) -> Key:
    return (id(database.client), database.name, stream_id)


def _copy(aggregate: Aggregate) -> Aggregate:
    """A copy that shares nothing mutable with ``aggregate``, without its commit index."""
    clone = copy.copy(aggregate)
    for name, value in vars(aggregate).items():
        if name not in ("changes", "commits_by_command"):
            setattr(clone, name, copy.deepcopy(value))
    clone.changes = []
    clone.commits_by_command = {}
    return clone


CACHE = AggregateCache()
