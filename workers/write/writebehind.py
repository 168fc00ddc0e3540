"""Write-behind for bookkeeping: small writes collected and written together per interval.

Only for writes whose loss in a crash is repaired elsewhere (the outbox's dispatch receipts,
one document per flush naming every commit sent: the relay re-sends what none names; a saga's
"pending sent" mark: the saga sweeper sends them again). They leave the message's path, which
then costs no round trip for them. Each says that something was sent, so a write added while
the thread's publishes await their confirms (``workers.runtime.confirms``) joins the batch only
once they are confirmed.

Marks that forget sent messages of one document (``mark_sent``) are also *held*: written
only once ``hold`` seconds passed without another mark for that document (and at the latest
``HOLD_LIMIT`` holds after the first), all of them merged into one update. A saga whose
steps follow each other within the hold has what it sent forgotten by one write, not one
per step: each document update is the store's unit of work.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from readstore.db import Document
from workers.runtime.confirms import after_confirms

log = structlog.get_logger("sagaworks.writebehind")

Key = tuple[int, str, str]
#: Builds the update that forgets ``ids`` on document ``doc_id``.
Forget = Callable[[Any, Sequence[str]], UpdateOne]
#: Held marks are written at the latest this many holds after the first of them.
HOLD_LIMIT = 4


@dataclass
class _Held:
    """Marks of one document waiting for their hold to pass."""

    collection: Collection[Document]
    build: Forget
    due: float
    latest: float
    ids: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """One collection's share of the next flush: updates, and items for one inserted document."""

    collection: Collection[Document]
    updates: list[UpdateOne] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    build: Callable[[list[Any]], Document] | None = None

    def write(self) -> int:
        """One bulk for the updates, one insert for the items; how many of both."""
        if self.updates:
            self.collection.bulk_write(self.updates, ordered=False)
        if self.items and self.build is not None:
            self.collection.insert_one(self.build(self.items))
        return len(self.updates) + len(self.items)


class WriteBehind:
    """Collects updates per collection; a background thread writes each batch in one bulk."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # held while a batch is written
        self._pending: dict[Key, Batch] = {}
        self._held: dict[tuple[Key, Any], _Held] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        atexit.register(self.flush)

    def add(self, collection: Collection[Document], update: UpdateOne) -> None:
        """Queue ``update`` for the next batch, once this thread's publishes are confirmed."""
        after_confirms(lambda: self._add(collection, update))

    def gather(
        self, collection: Collection[Document], item: Any, build: Callable[[list[Any]], Document]
    ) -> None:
        """Queue ``item`` for the one document ``build(items)`` the next batch inserts into
        ``collection``, once this thread's publishes are confirmed."""
        after_confirms(lambda: self._queue(collection, lambda b: _gathered(b, item, build)))

    def mark_sent(
        self,
        collection: Collection[Document],
        doc_id: Any,
        ids: Sequence[str],
        build: Forget,
        hold: float,
    ) -> None:
        """Forget ``ids`` on document ``doc_id`` (``build`` makes the update), merged with
        the document's other marks until ``hold`` seconds pass without one; once this
        thread's publishes are confirmed."""
        after_confirms(lambda: self._hold(collection, doc_id, list(ids), build, hold))

    def _hold(
        self,
        collection: Collection[Document],
        doc_id: Any,
        ids: list[str],
        build: Forget,
        hold: float,
    ) -> None:
        now = time.monotonic()
        with self._lock:
            held = self._held.get((_key(collection), doc_id))
            if held is None:
                held = _Held(collection, build, now + hold, now + HOLD_LIMIT * hold)
                self._held[(_key(collection), doc_id)] = held
            held.due = min(now + hold, held.latest)
            held.ids += [i for i in ids if i not in held.ids]
            self._start()

    def _add(self, collection: Collection[Document], update: UpdateOne) -> None:
        self._queue(collection, lambda batch: batch.updates.append(update))

    def _queue(self, collection: Collection[Document], change: Callable[[Batch], None]) -> None:
        with self._lock:
            change(self._pending.setdefault(_key(collection), Batch(collection)))
            self._start()

    def _start(self) -> None:
        """The background thread, started in this process if it is not running (lock held)."""
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
            self._thread.start()

    def flush(self) -> int:
        """Write every pending update and held mark now, each collection's batch on its own,
        and wait for a batch being written meanwhile; how many this call wrote (a batch that
        fails is dropped: the relay or the next step repairs it)."""
        return self._write(until=math.inf)

    def _write(self, until: float) -> int:
        """Write the pending updates and the held marks due by ``until`` (monotonic)."""
        with self._writing:
            with self._lock:
                pending, self._pending = self._pending, {}
                for (key, doc_id), held in list(self._held.items()):
                    if held.due <= until:
                        del self._held[key, doc_id]
                        update = held.build(doc_id, held.ids)
                        pending.setdefault(key, Batch(held.collection)).updates.append(update)
            written = 0
            for batch in pending.values():
                try:
                    written += batch.write()
                except PyMongoError:
                    log.warning(
                        "writebehind.failed",
                        collection=batch.collection.name,
                        updates=len(batch.updates),
                        items=len(batch.items),
                    )
        return written

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self._write(until=time.monotonic())


def _key(collection: Collection[Document]) -> Key:
    return (id(collection.database.client), collection.database.name, collection.name)


def _gathered(batch: Batch, item: Any, build: Callable[[list[Any]], Document]) -> None:
    batch.items.append(item)
    batch.build = build


WRITE_BEHIND = WriteBehind()
