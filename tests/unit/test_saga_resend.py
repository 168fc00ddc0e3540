"""A saga's "sent" marks lost with the process that sent them: the sweeper repairs them.

A step's messages are saved as pending with its state, sent, then forgotten by a mark
written behind. A worker killed (or a store paused) before that mark is written leaves them
pending although they went out; nothing else comes for a finished saga, so without a repair
it would count as running for ever.
"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from messages import Message
from messages.inventory import StockLine, StockReleased, StockReserved
from messages.orders import OrderCancelled, OrderConfirmed
from messages.payments import PaymentCharged
from readstore.db import get_database
from sagas.store import SagaStore
from tests.support import order_placed, place_order
from workers.subscribers import fulfilment as sagas
from workers.subscribers.deadlines import Sweeper
from workers.write.writebehind import WRITE_BEHIND


@pytest.fixture
def lost_marks(monkeypatch, stub_broker, settings):
    """The saga on; what it sends is recorded, and its "sent" marks are never written."""
    sagas.configure(settings.model_copy(update={"fulfilment_saga": True}))
    monkeypatch.setattr(sagas, "send", lambda _: None)
    monkeypatch.setattr(sagas.WRITE_BEHIND, "mark_sent", lambda *_: None)


def sweep(store: SagaStore, at: datetime) -> tuple[list[Message], list[Message]]:
    """One sweeper pass at ``at``: the deadlines it fired and the commands it sent."""
    deadlines: list[Message] = []
    commands: list[Message] = []
    Sweeper(store, deadlines.append, commands.append, timedelta(seconds=30)).run_once(at)
    return deadlines, commands


def test_finished_saga_whose_sent_marks_were_lost_is_finished_after_a_sweep(lost_marks):
    # Given an order run to its end by a worker whose "sent" marks were never written
    placed = order_placed(place_order(uuid.uuid4(), ("A", 2, "5.00")))
    order = placed.order_id
    sagas.run_saga(placed)
    sagas.run_saga(StockReserved(order_id=order, lines=(StockLine(sku="A", quantity=2),)))
    sagas.run_saga(PaymentCharged(order_id=order, amount=Decimal("10.00"), reference="r"))
    sagas.run_saga(
        OrderConfirmed(order_id=order, customer_id=placed.customer_id, total=Decimal("10.00"))
    )
    store = SagaStore(get_database())
    assert store.count_running() == 1

    # When the sweeper passes a step after the saga ended
    deadlines, commands = sweep(store, datetime.now(UTC) + timedelta(minutes=1))

    # Then what was left pending is sent again (its receivers take each once) and forgotten:
    # the saga no longer counts as running, and no deadline fires for a finished saga
    assert sorted(m.type_name() for m in commands) == [
        "ChargePayment",
        "CommitStock",
        "ConfirmOrder",
        "ReserveStock",
    ]
    assert deadlines == []
    assert store.count_running() == 0
    assert sweep(store, datetime.now(UTC) + timedelta(hours=1)) == ([], [])


def test_cancelled_saga_whose_first_mark_was_lost_is_finished_after_a_sweep(
    lost_marks, monkeypatch
):
    # Given an order whose ReserveStock mark was lost, then cancelled upstream (the last
    # steps' marks written: their own messages forgotten, the lost one still pending)
    placed = order_placed(place_order(uuid.uuid4(), ("A", 1, "5.00")))
    sagas.run_saga(placed)
    monkeypatch.delattr(sagas.WRITE_BEHIND, "mark_sent")  # the marks are written from now on
    cancelled = OrderCancelled(
        order_id=placed.order_id,
        customer_id=placed.customer_id,
        reason="customer",
        total=placed.total,
    )
    sagas.run_saga(cancelled)
    lines = (StockLine(sku="A", quantity=1),)
    released = StockReleased(order_id=placed.order_id, lines=lines, reason="customer")
    sagas.run_saga(released)
    WRITE_BEHIND.flush()
    store = SagaStore(get_database())
    doc = store.get(str(placed.order_id))
    assert doc is not None and doc["status"] == "cancelled"
    assert [p["type"] for p in doc["pending"]] == ["ReserveStock"]

    # When the sweeper passes a step after the saga ended
    deadlines, commands = sweep(store, datetime.now(UTC) + timedelta(minutes=1))

    # Then the ReserveStock is sent again and forgotten; the saga no longer counts as running
    assert [m.type_name() for m in commands] == ["ReserveStock"]
    assert deadlines == []
    assert store.count_running() == 0
