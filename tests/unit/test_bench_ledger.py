"""The saga bench's ledger: when the work an order caused has gone quiet."""

from __future__ import annotations

import threading
import uuid

from pymongo import MongoClient, UpdateOne

from readstore.db import Document
from workers.runtime import periodic
from workers.workloads.instruments import Ledger


def _on_thread(name: str, work: object) -> None:
    thread = threading.Thread(target=work, name=name)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def test_a_periodic_tasks_polls_do_not_count_as_activity() -> None:
    """The sweeper polls once a second for ever; counting its polls, the bench's wait for
    quiet never ended (and its round trips were charged to the orders meanwhile)."""
    ledger = Ledger()
    periodic.register("saga-deadlines", lambda: None, 1.0)
    try:
        _on_thread("saga-deadlines", lambda: ledger.add(ledger.step(), round_trips=1))
        assert ledger.activity() == 0
        _on_thread("write-behind", lambda: ledger.add(ledger.step(), round_trips=1))
        assert ledger.activity() == 1
        assert ledger.totals().round_trips == 2  # still counted, only not waited on
    finally:
        periodic.unregister("saga-deadlines")


def test_documents_written_are_counted_apart_from_round_trips(mongo_url: str) -> None:
    """A bulk write is one round trip, but the store does each document's work: the bench
    counts both."""
    ledger = Ledger()
    client: MongoClient[Document] = MongoClient(
        mongo_url, event_listeners=[ledger.store_listener()]
    )
    collection = client[f"test_{uuid.uuid4().hex[:16]}"].marks
    try:
        collection.insert_many([{"_id": 1}, {"_id": 2}])
        collection.bulk_write([UpdateOne({"_id": i}, {"$set": {"x": i}}) for i in (1, 2, 3)])
        collection.delete_many({})
        total = ledger.totals()
        assert (total.round_trips, total.writes) == (3, 6)
    finally:
        client.drop_database(collection.database.name)
        client.close()
