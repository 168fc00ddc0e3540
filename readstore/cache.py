"""An in-process query cache, invalidated by the read model's version and by consistency tokens.

Each read model has a change counter: a document of its own collection (``VERSION_ID``,
which its queries leave out) that its projection bumps in the bulk write of every live
apply, after the apply's own steps, so the bump costs no round trip. The bump sets a fresh
token (and counts): a collection swapped in by a rebuild, which has no counter yet, can
never repeat a token an answer was cached under. An answer is cached under the token read
*before* it was computed: any write landing later is followed by a bump, so the next probe
misses. A query with a consistency token first waits until the model reached the token; a
cached answer then serves only if it was computed after that moment was observed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from pymongo.database import Database

from readstore.consistency import Answer, ConsistencyToken, wait_until
from readstore.db import Document
from readstore.steps import CREATE, Step

T = TypeVar("T")
#: The ``_id`` of the change counter's document in a model's collection.
VERSION_ID = "~version"


def model_version(database: Database[Document], model: str) -> int:
    """How many times ``model``'s collection was bumped (0 when never)."""
    doc = database[model].find_one({"_id": VERSION_ID})
    return int(doc["version"]) if doc else 0


def model_token(database: Database[Document], model: str) -> str:
    """The token of ``model``'s last bump ("" when never)."""
    doc = database[model].find_one({"_id": VERSION_ID})
    return str(doc["token"]) if doc else ""


def bump(collection: str) -> Step:
    """The step that bumps the change counter of the model in ``collection``."""
    update = {"$inc": {"version": 1}, "$set": {"token": uuid.uuid4().hex}}
    return Step(collection, {"_id": VERSION_ID}, update, CREATE)


@dataclass(frozen=True)
class _Entry:
    value: Any
    version: str
    started: float


class QueryCache:
    """A bounded LRU of query answers keyed by (database, model, query, arguments)."""

    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._observed: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def answer(
        self,
        database: Database[Document],
        model: str,
        key: Hashable,
        compute: Callable[[], T],
        *,
        token: ConsistencyToken | None = None,
        reached: Callable[[ConsistencyToken], bool] | None = None,
        timeout: float = 5.0,
    ) -> Answer[T]:
        """``compute()``'s answer, from the cache when it is still current (and not older
        than ``token``, which ``reached`` checks against the model)."""
        since = 0.0
        if token is not None and reached is not None:
            if not wait_until(lambda: reached(token), timeout):
                return Answer(compute(), stale=True)
            since = self._observe(database.name, token)
        full_key = (database.name, model, key)
        version = model_token(database, model)
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is not None and entry.version == version and entry.started >= since:
                self._entries.move_to_end(full_key)
                self.hits += 1
                return Answer(entry.value)
            self.misses += 1
        started = time.monotonic()
        value = compute()
        self._store(full_key, _Entry(value, version, started))
        return Answer(value)

    def _observe(self, database: str, token: ConsistencyToken) -> float:
        """When this process first saw the model at (or past) ``token``: the write is older."""
        now = time.monotonic()
        with self._lock:
            seen = self._observed.get((database, token.stream_id))
            if seen is not None and seen[0] >= token.version:
                return seen[1]
            if len(self._observed) >= self.max_entries * 4:
                self._observed.clear()
            self._observed[(database, token.stream_id)] = (token.version, now)
        return now

    def _store(self, key: Hashable, entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def stats(self) -> dict[str, float | int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hit_rate(), 4),
            "entries": len(self._entries),
        }

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._observed.clear()
            self.hits = self.misses = 0


#: The process's query cache.
query_cache = QueryCache()
