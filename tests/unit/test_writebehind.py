"""The write-behind: bookkeeping updates batched per collection and written in bulk; once
``flush()`` returns, every update added before it is written."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from pymongo import MongoClient, UpdateOne
from pymongo.database import Database

from readstore.db import Document
from workers.write import receipts
from workers.write.writebehind import WriteBehind


class SlowCollection:
    """A collection whose first bulk write waits until it is let go."""

    def __init__(self) -> None:
        self.database = SimpleNamespace(client=object(), name="db")
        self.name = "marks"
        self.writing = threading.Event()
        self.go_on = threading.Event()
        self.written: list[Any] = []

    def bulk_write(self, updates: list[UpdateOne], ordered: bool = True) -> None:
        if not self.writing.is_set():
            self.writing.set()
            self.go_on.wait(10)
        self.written.extend(updates)


def test_flush_returns_only_once_a_batch_being_written_meanwhile_is_written():
    # Given a mark whose batch the background thread is writing, slowly
    behind = WriteBehind(interval=0.01)
    collection = SlowCollection()
    mark = UpdateOne({"_id": 1}, {"$set": {"sent": True}})
    behind.add(collection, mark)  # type: ignore[arg-type]
    assert collection.writing.wait(10)

    # When flush() is called meanwhile (the write goes on a moment later)
    threading.Timer(0.3, collection.go_on.set).start()
    behind.flush()

    # Then the mark is written by the time flush() returns
    assert collection.written == [mark]


def test_a_batch_that_fails_does_not_drop_the_other_collections_batches(mongo_url, database):
    # Given updates queued for a collection whose client has closed, and for another one
    behind = WriteBehind(interval=3600)
    gone: MongoClient = MongoClient(mongo_url)
    behind.add(gone[database.name].elsewhere, UpdateOne({"_id": 1}, {"$set": {"x": 1}}))
    gone.close()
    behind.add(database.marks, UpdateOne({"_id": 2}, {"$set": {"x": 2}}, upsert=True))

    # When the batches are written
    written = behind.flush()

    # Then the failed batch is reported and the other one is written all the same
    assert written == 1
    assert database.marks.find_one({"_id": 2}) == {"_id": 2, "x": 2}


def test_commits_dispatched_between_flushes_share_one_receipt_per_database(
    database: Database[Document],
) -> None:
    # Given commits of two databases dispatched between two flushes
    behind = WriteBehind(interval=3600)
    other = database.client[f"{database.name}_b"]
    for name in ("a@1", "b@1", "c@1"):
        behind.gather(receipts.receipts(database), name, receipts.receipt)
    behind.gather(receipts.receipts(other), "d@1", receipts.receipt)

    # When the batch is written
    try:
        behind.flush()
        found = [list(receipts.receipts(db).find()) for db in (database, other)]
    finally:
        database.client.drop_database(other.name)

    # Then each database got one receipt naming its commits, in the order sent
    assert [[r["commits"] for r in rs] for rs in found] == [[["a@1", "b@1", "c@1"]], [["d@1"]]]
