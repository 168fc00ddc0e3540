"""Every write the service makes to one document reaches it by ``_id`` alone.

A filter that pairs ``_id`` with a top-level logical operator (``$or``, ``$nor``, ``$and``,
``$expr``) is no longer a point lookup for every server: SecantusDB then reads the whole
collection for each such write (measured: 0.5 ms against 31 ms at 5,000 documents), so a
customer's profile written per event cost more with every customer. Conditions on the
document's own fields go beside ``_id`` as plain field operators instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.database import Database

from messages.inventory import AddStock
from readstore.db import Document
from readstore.lease import acquire
from tests.support import listened, place_order, register_customer
from workers.runtime.settings import Settings
from workers.testing import TestService
from workers.write.writebehind import WRITE_BEHIND

LOGICAL = {"$or", "$nor", "$and", "$expr"}
WRITES = {"update": ("updates", "q"), "delete": ("deletes", "q")}


class Filters(monitoring.CommandListener):
    """The filters of every update, delete and findAndModify the client sends."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name, command = event.command_name, event.command
        if name in WRITES:
            field, key = WRITES[name]
            filters = [op.get(key, {}) for op in command.get(field, [])]
        elif name == "findAndModify":
            filters = [command.get("query", {})]
        else:
            return
        with self._lock:
            self.seen += [(name, str(command.get(name, "")), f) for f in filters]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def point_writes_with_logic(self) -> set[tuple[str, str, str]]:
        """(command, collection, operators) of each write by ``_id`` with a logical operator."""
        return {
            (name, collection, " ".join(sorted(LOGICAL & set(query))))
            for name, collection, query in self.seen
            if "_id" in query and not isinstance(query["_id"], dict) and LOGICAL & set(query)
        }


@pytest.fixture
def watched(mongo_url: str) -> Iterator[tuple[Filters, Database[Document]]]:
    filters = Filters()
    with listened(mongo_url, filters) as database:
        yield filters, database


def test_orders_end_to_end_write_documents_by_id_alone(
    watched: tuple[Filters, Database[Document]],
) -> None:
    filters, database = watched
    # Given the service, with snapshots of a SKU taken every few events
    settings = Settings(_env_file=None, snapshot_every={"sku": 2, "order": 2, "customer": 2})
    with TestService(settings, database) as service:
        service.send(AddStock(sku="SKU-1", quantity=50))
        customer = register_customer()
        service.send(customer)
        # When the customer places several orders, through the saga to the end
        for _ in range(4):
            service.send(place_order(customer.customer_id))
        # and a rebuild lease is taken
        acquire(database, "order_summary", "test", timedelta(seconds=60))
    # Then no write paired ``_id`` with a logical operator
    assert filters.seen, "the listener saw no writes"
    assert filters.point_writes_with_logic() == set()


def test_a_command_dispatched_writes_a_receipt_and_no_update_to_its_commit(
    watched: tuple[Filters, Database[Document]],
) -> None:
    filters, database = watched
    # Given the service
    settings = Settings(_env_file=None)
    with TestService(settings, database) as service:
        service.send(AddStock(sku="SKU-1", quantity=50))
        customer = register_customer()
        service.send(customer)
        # When an order goes through the saga to the end, and the batched bookkeeping is written
        service.send(place_order(customer.customer_id))
        WRITE_BEHIND.flush()
    # Then no commit was updated once inserted, and every commit is named by a receipt
    updates = [(name, c) for name, c, _ in filters.seen if c == "commits"]
    assert updates == []
    committed = {doc["_id"] for doc in database["commits"].find({}, {"_id": 1})}
    receipted = {c for r in database["outbox_receipts"].find() for c in r["commits"]}
    assert len(committed) > 3 and committed <= receipted
