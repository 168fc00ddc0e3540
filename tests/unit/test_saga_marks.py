"""A saga's "sent" marks: held back a moment and merged, so a saga whose steps follow one
another closely has its sent messages forgotten in one write, not one write per step.

A mark only forgets messages already sent (confirmed); losing one costs a re-send that the
receiving handler takes once, so it may wait. Each write of a mark is a document update,
the unit of the store's work: one order's four steps made four of them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import UpdateOne, monitoring
from pymongo.database import Database

from messages.inventory import AddStock
from readstore.db import Document
from sagas.store import SagaStore
from tests.support import listened, place_order, register_customer
from workers.runtime.settings import Settings
from workers.testing import TestService
from workers.write.writebehind import WRITE_BEHIND, WriteBehind


class Recorded:
    """A stand-in collection that keeps what is written to it."""

    def __init__(self) -> None:
        self.database = type("Db", (), {"client": object(), "name": "db"})()
        self.name = "sagas"
        self.written: list[UpdateOne] = []

    def bulk_write(self, updates: list[UpdateOne], ordered: bool = True) -> None:
        self.written.extend(updates)


def pulled(update: UpdateOne) -> tuple[Any, list[str]]:
    doc = update._doc  # the update document pymongo will send
    return update._filter["_id"], sorted(doc["$pull"]["pending"]["message_id"]["$in"])


def test_marks_of_one_document_within_the_hold_become_one_update() -> None:
    # Given a write-behind whose background pass runs often, and marks held for 0.5 s
    behind = WriteBehind(interval=0.02)
    collection = Recorded()
    for ids in (["a"], ["b"], ["c"]):
        behind.mark_sent(collection, "saga-1", ids, SagaStore.sent, hold=0.5)  # type: ignore[arg-type]
        time.sleep(0.05)
    behind.mark_sent(collection, "saga-2", ["x"], SagaStore.sent, hold=0.5)  # type: ignore[arg-type]

    # Then nothing is written before the hold has passed since the last mark
    time.sleep(0.2)
    assert collection.written == []

    # and after it, one update per document, forgetting every message marked
    deadline = time.monotonic() + 5
    while len(collection.written) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(map(pulled, collection.written)) == [
        ("saga-1", ["a", "b", "c"]),
        ("saga-2", ["x"]),
    ]


def test_flush_writes_held_marks_at_once() -> None:
    behind = WriteBehind(interval=3600)
    collection = Recorded()
    behind.mark_sent(collection, "saga-1", ["a"], SagaStore.sent, hold=60)  # type: ignore[arg-type]
    assert behind.flush() == 1
    assert list(map(pulled, collection.written)) == [("saga-1", ["a"])]


def test_a_mark_held_again_and_again_is_written_within_the_longest_hold() -> None:
    # Given marks added to one document more often than the hold, for longer than it
    behind = WriteBehind(interval=0.02)
    collection = Recorded()
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        behind.mark_sent(collection, "saga-1", [str(uuid.uuid4())], SagaStore.sent, hold=0.2)  # type: ignore[arg-type]
        time.sleep(0.05)
    # Then they did not wait for a pause that never came: written at most 4 holds late
    assert collection.written, "the marks were held for as long as they kept coming"


class Pulls(monitoring.CommandListener):
    """The update statements that pull from a saga's pending messages."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name != "update" or event.command.get("update") != "sagas":
            return
        with self._lock:
            self.seen += [u["q"]["_id"] for u in event.command["updates"] if "$pull" in u["u"]]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def watched(mongo_url: str) -> Iterator[tuple[Pulls, Database[Document]]]:
    pulls = Pulls()
    with listened(mongo_url, pulls) as database:
        yield pulls, database


def test_a_confirmed_orders_saga_forgets_what_it_sent_in_one_write(
    watched: tuple[Pulls, Database[Document]],
) -> None:
    pulls, database = watched
    # Given the service with the saga on and step deadlines long enough to hold marks
    settings = Settings(_env_file=None, fulfilment_saga=True, saga_step_deadline_seconds=60.0)
    with TestService(settings, database) as service:
        service.send(AddStock(sku="SKU-1", quantity=50))
        customer = register_customer()
        service.send(customer)
        # When orders go through their four steps to the end
        orders = [place_order(customer.customer_id) for _ in range(3)]
        for order in orders:
            service.send(order)
        WRITE_BEHIND.flush()
    # Then each saga's sent messages were forgotten by one write, and none is left pending
    sagas = SagaStore(database)
    for order in orders:
        doc = sagas.get(str(order.order_id))
        assert doc is not None and doc["status"] == "completed"
        assert doc["pending"] == []
    assert sorted(pulls.seen) == sorted(str(o.order_id) for o in orders)
