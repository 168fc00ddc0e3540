"""The saga actor on its store: pending messages survive failed sends, deadlines are swept."""

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from dramatiq import Worker

from messages import Command
from messages.inventory import ReleaseStock, StockLine, StockReserved
from messages.orders import OrderCancelled, order_stream
from messages.payments import PaymentDeclined
from readstore.db import get_database
from readstore.eventlog import read_stream
from sagas.store import SagaStore
from tests.support import order_placed, place_order, register_customer, settle
from workers.subscribers import fulfilment as sagas
from workers.write.commands import execute
from workers.write.eventstore import EventStore
from workers.write.writebehind import WRITE_BEHIND


@pytest.fixture
def sent(monkeypatch, stub_broker, settings):
    """The saga on; what it sends is recorded instead of enqueued."""
    sagas.configure(settings.model_copy(update={"fulfilment_saga": True}))
    out: list[Command] = []
    monkeypatch.setattr(sagas, "send", out.append)
    return out


def test_command_whose_send_failed_survives_a_later_step_of_the_saga(sent, monkeypatch):
    # Given a saga charging an order
    placed = order_placed(place_order(uuid.uuid4(), ("A", 2, "5.00")))
    order = placed.order_id
    sagas.run_saga(placed)
    sagas.run_saga(StockReserved(order_id=order, lines=(StockLine(sku="A", quantity=2),)))

    # When the decline's ReleaseStock cannot be sent (the message will be retried), an
    # upstream cancellation is handled meanwhile, and then the decline is retried
    declined = PaymentDeclined(order_id=order, amount=Decimal("10.00"), reason="card declined")

    def refuse(message):
        raise ConnectionError("broker away")

    monkeypatch.setattr(sagas, "send", refuse)
    with pytest.raises(ConnectionError):
        sagas.run_saga(declined)
    monkeypatch.setattr(sagas, "send", sent.append)
    cancel = OrderCancelled(
        order_id=order, customer_id=placed.customer_id, reason="customer", total=placed.total
    )
    sagas.run_saga(cancel)
    sagas.run_saga(declined)

    # Then the retry sends the ReleaseStock the failed send left pending
    assert ReleaseStock in [type(m) for m in sent]


def test_backlogged_order_gets_its_full_step_deadline(sent):
    # Given an order placed an hour before its saga reads it (a backlog)
    placed = order_placed(place_order(uuid.uuid4(), ("A", 1, "5.00")))
    placed = placed.model_copy(update={"occurred_at": datetime.now(UTC) - timedelta(hours=1)})

    # When the saga starts
    before = datetime.now(UTC)
    sagas.run_saga(placed)

    # Then its deadline is a full step from now, not already past
    doc = SagaStore(get_database()).get(str(placed.order_id))
    assert doc is not None
    assert doc["deadline"] >= before + timedelta(seconds=sagas.step_seconds() - 1)


def test_deadline_that_fell_due_while_the_worker_was_down_fires_and_compensates(
    settings, stub_broker
):
    # Given a placed order whose saga sent ReserveStock, and then every worker went down
    # (the ReserveStock they had taken is lost with them) past the step's deadline
    tuned = {"fulfilment_saga": True, "saga_step_deadline_seconds": 0.5, "saga_sweep_seconds": 0.1}
    sagas.configure(settings.model_copy(update=tuned))
    customer = register_customer()
    order = place_order(customer.customer_id, ("A", 1, "5.00"))
    store = EventStore()
    execute(customer, store)
    execute(order, store)
    (placed,) = read_stream(get_database(), order_stream(order.order_id))
    sagas.run_saga(placed)
    stub_broker.flush_all()
    time.sleep(1.0)

    # When a worker starts again
    worker = Worker(stub_broker, worker_timeout=50, worker_threads=2)
    worker.start()
    try:
        wait_for(order.order_id, "cancelled")
        settle(stub_broker, worker)
    finally:
        worker.stop()
    WRITE_BEHIND.flush()

    # Then its sweeper fired the deadline: the reservation released, the order cancelled
    doc = SagaStore(get_database()).get(str(order.order_id))
    assert doc is not None
    assert doc["state"]["reason"] == "stock reservation timed out"
    assert doc["state"]["compensations"] == ["release_stock"]
    assert doc["pending"] == []
    assert [e.type_name() for e in read_stream(get_database(), order_stream(order.order_id))] == [
        "OrderPlaced",
        "OrderCancelled",
    ]


def wait_for(order_id, status, timeout=20.0):
    store = SagaStore(get_database())
    deadline = time.monotonic() + timeout
    while (store.get(str(order_id)) or {}).get("status") != status:
        assert time.monotonic() < deadline, store.get(str(order_id))
        time.sleep(0.1)
