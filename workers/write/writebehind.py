"""Write-behind for bookkeeping: small updates collected and written in one bulk per interval.

Only for writes whose loss in a crash is repaired elsewhere (a commit's "dispatched" mark:
the relay re-sends; a saga's "pending sent" mark: the saga sweeper sends them again). They leave
the message's path, which then costs no round trip for them. Each such mark says that
something was sent, so an update added while the thread's publishes await their confirms
(``workers.runtime.confirms``) joins the batch only once they are confirmed.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

import structlog
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from readstore.db import Document
from workers.runtime.confirms import after_confirms

log = structlog.get_logger("sagaworks.writebehind")

Key = tuple[int, str, str]


class WriteBehind:
    """Collects updates per collection; a background thread writes each batch in one bulk."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # held while a batch is written
        self._pending: dict[Key, tuple[Collection[Document], list[UpdateOne]]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        atexit.register(self.flush)

    def add(self, collection: Collection[Document], update: UpdateOne) -> None:
        """Queue ``update`` for the next batch, once this thread's publishes are confirmed."""
        after_confirms(lambda: self._add(collection, update))

    def _add(self, collection: Collection[Document], update: UpdateOne) -> None:
        key = (id(collection.database.client), collection.database.name, collection.name)
        with self._lock:
            self._pending.setdefault(key, (collection, []))[1].append(update)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        """Write every pending update now, each collection's batch on its own, and wait for a
        batch being written meanwhile; how many this call wrote (a batch that fails is
        dropped: the relay or the next step repairs it)."""
        with self._writing:
            with self._lock:
                batches, self._pending = list(self._pending.values()), {}
            written = 0
            for collection, updates in batches:
                try:
                    collection.bulk_write(updates, ordered=False)
                except PyMongoError:
                    log.warning(
                        "writebehind.failed", collection=collection.name, updates=len(updates)
                    )
                    continue
                written += len(updates)
        return written

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


WRITE_BEHIND = WriteBehind()
