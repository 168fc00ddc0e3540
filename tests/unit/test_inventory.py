"""Inventory: stock per SKU and all-or-nothing, idempotent reservations per order."""

import threading
import uuid

import pytest

from messages.errors import CommandRejected
from messages.inventory import (
    AddStock,
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReleased,
    reservation_stream,
    sku_stream,
)
from readstore.eventlog import read_stream
from workers.contexts import reservations
from workers.contexts.inventory import Inventory, Reservation, Sku, run_inventory_command
from workers.write import outbox, snapshots
from workers.write.eventstore import EventStore


def _stock(database, sku: str) -> Sku:
    return Sku.from_commits(sku_stream(sku), EventStore(database).load(sku_stream(sku)))


def _status(database, order_id) -> str:
    stream = reservation_stream(order_id)
    return Reservation.from_commits(stream, EventStore(database).load(stream)).status


def _lines(*pairs: tuple[str, int]) -> tuple[StockLine, ...]:
    return tuple(StockLine(sku=sku, quantity=qty) for sku, qty in pairs)


def test_reservation_holds_every_line(stub_broker, database):
    # Given two SKUs in stock
    run_inventory_command(AddStock(sku="A", quantity=5))
    run_inventory_command(AddStock(sku="B", quantity=5))

    # When an order reserves both
    order_id = uuid.uuid4()
    outcome = run_inventory_command(
        ReserveStock(order_id=order_id, lines=_lines(("A", 2), ("B", 5)))
    )

    # Then both are held
    assert outcome == "reserved"
    assert (_stock(database, "A").available, _stock(database, "B").available) == (3, 0)


def test_shortage_holds_nothing_and_names_the_skus_short(stub_broker, database):
    # Given A in stock, B short and C missing
    run_inventory_command(AddStock(sku="A", quantity=5))
    run_inventory_command(AddStock(sku="B", quantity=1))

    # When an order asks for all three
    order_id = uuid.uuid4()
    command = ReserveStock(order_id=order_id, lines=_lines(("A", 2), ("B", 2), ("C", 1)))
    outcome = run_inventory_command(command)

    # Then nothing stays held, and the failure names B and C
    assert outcome == "failed"
    assert _stock(database, "A").available == 5
    (event,) = read_stream(database, reservation_stream(order_id))
    assert event.short == ("B", "C")  # type: ignore[attr-defined]


def test_redelivered_reservation_holds_once(stub_broker, database):
    # Given a reservation that went through
    run_inventory_command(AddStock(sku="A", quantity=5))
    command = ReserveStock(order_id=uuid.uuid4(), lines=_lines(("A", 2)))
    run_inventory_command(command)

    # When it is delivered again
    outcome = run_inventory_command(command)

    # Then it answers as before and holds nothing more
    assert outcome == "reserved"
    assert _stock(database, "A").available == 3


def test_racing_orders_never_take_more_than_there_is(stub_broker, database):
    # Given three units and ten orders of one unit each, at once
    run_inventory_command(AddStock(sku="A", quantity=3))
    orders = [uuid.uuid4() for _ in range(10)]
    outcomes: list[str] = []

    def reserve(order_id: uuid.UUID) -> None:
        outcomes.append(
            run_inventory_command(ReserveStock(order_id=order_id, lines=_lines(("A", 1))))
        )

    # When they all reserve
    threads = [threading.Thread(target=reserve, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then exactly three win and the shelf is empty, never negative
    assert sorted(outcomes).count("reserved") == 3
    assert _stock(database, "A").available == 0


def test_release_gives_back_and_refuses_a_late_reservation(stub_broker, database):
    # Given a released reservation
    run_inventory_command(AddStock(sku="A", quantity=5))
    order_id = uuid.uuid4()
    lines = _lines(("A", 2))
    run_inventory_command(ReserveStock(order_id=order_id, lines=lines))
    run_inventory_command(ReleaseStock(order_id=order_id, lines=lines, reason="payment declined"))

    # When the reservation arrives again, and a late release too
    run_inventory_command(ReserveStock(order_id=order_id, lines=lines))
    run_inventory_command(ReleaseStock(order_id=order_id, lines=lines, reason="again"))

    # Then the stock is all back and stays so
    assert _status(database, order_id) == "released"
    assert _stock(database, "A").available == 5


def test_release_before_the_reservation_blocks_it(stub_broker, database):
    # Given a compensation that overtook its reservation
    run_inventory_command(AddStock(sku="A", quantity=5))
    order_id = uuid.uuid4()
    lines = _lines(("A", 2))
    run_inventory_command(ReleaseStock(order_id=order_id, lines=lines, reason="timed out"))

    # When the reservation arrives
    outcome = run_inventory_command(ReserveStock(order_id=order_id, lines=lines))

    # Then it holds nothing
    assert outcome == "released"
    assert _stock(database, "A").available == 5


def test_committed_stock_cannot_be_released(stub_broker, database):
    # Given a committed reservation
    run_inventory_command(AddStock(sku="A", quantity=5))
    order_id = uuid.uuid4()
    lines = _lines(("A", 2))
    run_inventory_command(ReserveStock(order_id=order_id, lines=lines))
    run_inventory_command(CommitStock(order_id=order_id))

    # When a release comes, Then it is refused and the stock stays taken
    with pytest.raises(CommandRejected):
        run_inventory_command(ReleaseStock(order_id=order_id, lines=lines, reason="late"))
    assert run_inventory_command(CommitStock(order_id=order_id)) == "committed"
    assert _stock(database, "A").available == 3


def test_release_that_loses_the_race_to_its_reservation_still_releases(
    stub_broker, database, monkeypatch
):
    # Given stock, and a release whose claim is overtaken by the order's reservation
    run_inventory_command(AddStock(sku="A", quantity=5))
    order_id = uuid.uuid4()
    lines = _lines(("A", 2))
    real_append = EventStore.append
    raced: list[bool] = []

    def append(self, stream_id, expected, events, command=None):
        if isinstance(events[0], StockReleased) and not raced:
            raced.append(True)
            run_inventory_command(ReserveStock(order_id=order_id, lines=lines))
        return real_append(self, stream_id, expected, events, command)

    monkeypatch.setattr(EventStore, "append", append)

    # When the release runs
    outcome = run_inventory_command(ReleaseStock(order_id=order_id, lines=lines, reason="late"))

    # Then it decides again on the reservation that won: released, the stock all back
    assert raced
    assert outcome == "released"
    assert _status(database, order_id) == "released"
    assert _stock(database, "A").available == 5


def test_reservation_that_crashed_half_way_gives_back_after_a_release_overtook_it(
    stub_broker, database, monkeypatch
):
    # Given a reservation that held A and died before deciding, then a release of the order
    run_inventory_command(AddStock(sku="A", quantity=5))
    run_inventory_command(AddStock(sku="B", quantity=5))
    order_id = uuid.uuid4()
    lines = _lines(("A", 2), ("B", 1))
    real_claim = Inventory._claim

    def crash(self, reservation, event, command):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(Inventory, "_claim", crash)
    monkeypatch.setattr(reservations, "reserve_at_once", lambda *_: False)  # the careful path
    with pytest.raises(RuntimeError):
        run_inventory_command(ReserveStock(order_id=order_id, lines=lines))
    monkeypatch.setattr(Inventory, "_claim", real_claim)
    run_inventory_command(ReleaseStock(order_id=order_id, lines=lines, reason="timed out"))

    # When the reservation is redelivered
    outcome = run_inventory_command(ReserveStock(order_id=order_id, lines=lines))

    # Then it is released and every unit is back, each hold given back once
    assert outcome == "released"
    assert (_stock(database, "A").available, _stock(database, "B").available) == (5, 5)


def test_sku_state_stays_three_counters_whatever_the_orders(stub_broker, database):
    # Given a SKU through which orders were reserved, released and committed
    run_inventory_command(AddStock(sku="A", quantity=50))
    for i in range(6):
        order_id = uuid.uuid4()
        run_inventory_command(ReserveStock(order_id=order_id, lines=_lines(("A", 1))))
        if i % 2:
            run_inventory_command(CommitStock(order_id=order_id))
        else:
            lines = _lines(("A", 1))
            run_inventory_command(ReleaseStock(order_id=order_id, lines=lines, reason="x"))

    # When its state is taken for a snapshot, Then it is its counters, nothing per order
    sku = _stock(database, "A")
    assert snapshots.state_of(sku) == {"added": 50, "held": 6, "released": 3}
    assert sku.available == 47


def test_a_reservation_publishes_only_its_outcome(stub_broker, database, monkeypatch):
    # Given stock of two SKUs, and the outbox's sends recorded
    run_inventory_command(AddStock(sku="A", quantity=5))
    run_inventory_command(AddStock(sku="B", quantity=5))
    sent: list[tuple[str, int]] = []
    send = outbox.send

    def recorded(event):
        publishes = send(event)
        sent.append((event.type_name(), publishes))
        return publishes

    monkeypatch.setattr(outbox, "send", recorded)

    # When an order reserves both
    run_inventory_command(ReserveStock(order_id=uuid.uuid4(), lines=_lines(("A", 2), ("B", 1))))

    # Then the holds on the SKUs were sent to no one: only StockReserved has subscribers
    published = sorted((name, count > 0) for name, count in sent)
    assert published == [("StockHeld", False), ("StockHeld", False), ("StockReserved", True)]
