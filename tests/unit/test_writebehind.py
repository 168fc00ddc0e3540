"""Write-behind: a flush returns only once what was pending when it was called is written."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from pymongo import UpdateOne

from workers.write.writebehind import WriteBehind


class SlowCollection:
    """A collection whose bulk write waits until released."""

    def __init__(self) -> None:
        self.database = SimpleNamespace(client=object(), name="db")
        self.name = "c"
        self.started, self.release = threading.Event(), threading.Event()
        self.written: list[Any] = []

    def bulk_write(self, updates: list[Any], ordered: bool) -> None:
        self.started.set()
        self.release.wait(5)
        self.written.extend(updates)


def test_flush_waits_for_a_batch_another_flush_is_writing():
    # Given an update whose batch another flush (the background one) is writing, slowly
    behind, collection = WriteBehind(interval=3600), SlowCollection()
    behind.add(collection, UpdateOne({"_id": 1}, {"$set": {"sent": True}}))  # type: ignore[arg-type]
    threading.Thread(target=behind.flush, daemon=True).start()
    assert collection.started.wait(5)

    # When flush is called meanwhile (that write ends a moment later)
    threading.Timer(0.2, collection.release.set).start()
    behind.flush()

    # Then it returned only once the update was written
    assert len(collection.written) == 1
