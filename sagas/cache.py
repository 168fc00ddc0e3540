"""The sagas this process wrote last, so the next step of a saga need not read it first.

A saga is saved only at the version it was read at (``SagaStore.save``), so a step taken on
a cached copy that another worker has moved past is refused by that filter: the entry is
dropped and the step taken again on a fresh read. A step that would write nothing (a
duplicate, a message the state ignores) is not checked that way, so it is decided again on
a fresh read before it is answered (``sagas.runner``). A copy's ``pending`` may still list
messages already sent: only a fresh read's are ever re-sent. An empty cache (a new
process, another worker) only costs the reads it would have saved.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class RecordCache:
    """Saga records by key, bounded (the least recently written go first); thread-safe."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._records: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            return self._records.get(key)

    def put(self, key: Hashable, record: Any) -> None:
        with self._lock:
            self._records[key] = record
            self._records.move_to_end(key)
            while len(self._records) > self.size:
                self._records.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._records.pop(key, None)
