"""Commands and saga steps on what this process wrote last: stale copies are caught by the
append's version (or the saga's versioned save), and the common path costs one write."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pymongo import MongoClient, monitoring

from messages.inventory import (
    AddStock,
    CommitStock,
    ReserveStock,
    StockAdded,
    StockLine,
    StockReserved,
    sku_stream,
)
from messages.orders import ConfirmOrder, OrderCancelled, order_stream
from messages.payments import PaymentCharged
from readstore.db import set_database
from sagas.cache import RecordCache
from sagas.runner import Runner
from tests.support import order_placed, place_order, register_customer
from workers.contexts.inventory import Sku, run_inventory_command
from workers.workloads.exploration.memory import MemorySagaStore
from workers.write.commands import execute
from workers.write.eventstore import EventStore
from workers.write.writebehind import WRITE_BEHIND


class Commands(monitoring.CommandListener):
    """Counts the store commands this thread sends (not the write-behind's)."""

    def __init__(self) -> None:
        self.count = 0
        self.thread = threading.get_ident()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += threading.get_ident() == self.thread

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def counted(mongo_url, database, stub_broker) -> Iterator[Commands]:
    """The process-wide database on a client whose commands are counted."""
    listener = Commands()
    client = MongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    set_database(client[database.name])
    yield listener
    WRITE_BEHIND.flush()  # its marks go through this client
    client.close()


def _available(sku: str) -> int:
    return Sku.from_commits(sku_stream(sku), EventStore().load(sku_stream(sku))).available


def test_command_on_a_stale_cached_aggregate_reads_again_and_commits_once(counted):
    # Given SKU A cached by this process at version 1, then moved by another writer
    store = EventStore()
    execute(AddStock(sku="A", quantity=1), store)
    store.append(sku_stream("A"), 1, [StockAdded(sku="A", quantity=10)])

    # When this process adds stock to A
    result = execute(AddStock(sku="A", quantity=100), store)

    # Then its first append collided, and the retry on a fresh read lost nothing
    assert str(result.token) == "sku-A:3"
    assert _available("A") == 111


def test_shortage_seen_on_a_cached_sku_is_checked_on_a_fresh_read(counted):
    # Given SKU A cached with nothing left, then restocked by another writer
    run_inventory_command(AddStock(sku="A", quantity=1))
    first = ReserveStock(order_id=uuid.uuid4(), lines=(StockLine(sku="A", quantity=1),))
    assert run_inventory_command(first) == "reserved"
    EventStore().append(sku_stream("A"), 2, [StockAdded(sku="A", quantity=5)])

    # When an order reserves two units
    second = ReserveStock(order_id=uuid.uuid4(), lines=(StockLine(sku="A", quantity=2),))

    # Then it is reserved: the cached shortage was not believed
    assert run_inventory_command(second) == "reserved"
    assert _available("A") == 3


def test_reservation_and_its_commit_on_cached_streams_take_one_write_each(counted):
    # Given SKUs A and B in stock, both read by an earlier reservation of this process
    for sku in "AB":
        run_inventory_command(AddStock(sku=sku, quantity=10))
    lines = (StockLine(sku="A", quantity=1), StockLine(sku="B", quantity=2))
    run_inventory_command(ReserveStock(order_id=uuid.uuid4(), lines=lines))
    order_id = uuid.uuid4()

    # When another order reserves both and then commits its stock
    before = counted.count
    assert run_inventory_command(ReserveStock(order_id=order_id, lines=lines)) == "reserved"
    reserved = counted.count - before
    assert run_inventory_command(CommitStock(order_id=order_id)) == "committed"

    # Then each took one store round trip: the two holds and the claim in one insert, then
    # the commit on the reservation as this process left it
    assert (reserved, counted.count - before - reserved) == (1, 1)
    assert (_available("A"), _available("B")) == (8, 6)


def test_order_placed_and_confirmed_on_a_cached_customer_and_order_take_one_write_each(counted):
    # Given a customer this process registered
    store = EventStore()
    customer = register_customer()
    execute(customer, store)
    order = place_order(customer.customer_id, ("A", 1, "5.00"))

    # When an order of theirs is placed and confirmed
    before = counted.count
    execute(order, store)
    execute(ConfirmOrder(order_id=order.order_id), store)

    # Then each command was one insert: nothing was read
    assert counted.count - before == 2
    assert [e.type_name() for e in store.load(order_stream(order.order_id))[-1].events] == [
        "OrderConfirmed"
    ]


def test_confirmation_on_a_cached_order_another_writer_cancelled_is_a_no_op(counted):
    # Given an order this process placed, then cancelled by another writer
    store = EventStore()
    customer = register_customer()
    execute(customer, store)
    order = place_order(customer.customer_id, ("A", 1, "5.00"))
    execute(order, store)
    cancelled = OrderCancelled(
        order_id=order.order_id, customer_id=customer.customer_id, reason="r", total=Decimal(5)
    )
    store.append(order_stream(order.order_id), 1, [cancelled])

    # When this process confirms it
    result = execute(ConfirmOrder(order_id=order.order_id), store)

    # Then nothing is committed: the cancellation, read afresh, stands
    assert not result.committed
    assert [c.events[0].type_name() for c in store.load(order_stream(order.order_id))] == [
        "OrderPlaced",
        "OrderCancelled",
    ]


def _runner(store: MemorySagaStore, sent: list, cache: RecordCache | None) -> Runner:
    return Runner(store, sent.append, store.forget, 30.0, 3, cache=cache)


def test_saga_step_on_a_stale_cached_record_is_taken_again_on_a_fresh_read():
    # Given a saga this process started (and cached), moved on by another worker
    store, cache, sent = MemorySagaStore({}), RecordCache(), []
    placed = order_placed(place_order(uuid.uuid4(), ("A", 1, "5.00")))
    lines = (StockLine(sku="A", quantity=1),)
    _runner(store, sent, cache).run(placed, placed.occurred_at)
    elsewhere = _runner(store, [], None)
    elsewhere.run(StockReserved(order_id=placed.order_id, lines=lines), placed.occurred_at)

    # When this process handles the charge
    charged = PaymentCharged(order_id=placed.order_id, amount=Decimal(5), reference="r")
    outcome = _runner(store, sent, cache).run(charged, placed.occurred_at)

    # Then the step was taken on the saga as it stands: confirming, not an early charge
    assert outcome == "confirming"
    assert [m.type_name() for m in sent] == ["ReserveStock", "ConfirmOrder"]


def test_duplicate_seen_on_a_cached_record_is_answered_from_a_fresh_read():
    # Given a saga this process moved to charging
    store, cache, sent = MemorySagaStore({}), RecordCache(), []
    placed = order_placed(place_order(uuid.uuid4(), ("A", 1, "5.00")))
    reserved = StockReserved(order_id=placed.order_id, lines=(StockLine(sku="A", quantity=1),))
    _runner(store, sent, cache).run(placed, placed.occurred_at)
    _runner(store, sent, cache).run(reserved, placed.occurred_at)

    # When the same StockReserved is delivered again
    outcome = _runner(store, sent, cache).run(reserved, placed.occurred_at)

    # Then it is a duplicate, and nothing is sent twice
    assert outcome == "duplicate"
    assert [m.type_name() for m in sent] == ["ReserveStock", "ChargePayment"]


def test_reservation_on_a_sku_another_writer_moved_holds_each_line_once(counted):
    # Given SKUs A and B cached by this process, then B moved by another writer
    for sku in "AB":
        run_inventory_command(AddStock(sku=sku, quantity=10))
    EventStore().append(sku_stream("B"), 1, [StockAdded(sku="B", quantity=5)])
    order_id = uuid.uuid4()
    lines = (StockLine(sku="A", quantity=1), StockLine(sku="B", quantity=2))

    # When an order reserves both
    outcome = run_inventory_command(ReserveStock(order_id=order_id, lines=lines))

    # Then it is reserved, each line held once
    assert outcome == "reserved"
    assert (_available("A"), _available("B")) == (9, 13)
    assert [c.version for c in EventStore().load(sku_stream("A"))] == [1, 2]
