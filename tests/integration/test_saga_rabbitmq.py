"""The fulfilment saga against the real RabbitMQ: every path, a duplicate reply, a crash."""

import time
from decimal import Decimal

import pytest

from messages.inventory import AddStock, reservation_stream
from messages.payments import PaymentCharged, payment_stream
from readstore.db import get_database
from readstore.eventlog import read_stream
from readstore.inventory import get_inventory_level
from readstore.orders import get_order
from sagas.store import SagaStore
from tests.support import place_order, register_customer, settle
from workers.contexts import payments
from workers.ops.invariants import check_fulfilment
from workers.publishing import publish
from workers.subscribers import fulfilment as sagas
from workers.write.outbox import send_event


@pytest.fixture
def saga_settings(settings, rabbitmq_broker):
    """The saga on, its deadline short; the simulated gateway's slow method slower still."""
    tuned = settings.model_copy(
        update={
            "fulfilment_saga": True,
            "saga_step_deadline_seconds": 3.0,
            "payment_slow_seconds": 5.0,
        }
    )
    sagas.configure(tuned)
    payments.configure(tuned)
    return tuned


def wait_for_saga(order_id, *states, timeout=30.0):
    store = SagaStore(get_database())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = store.get(str(order_id))
        if doc and doc["status"] in states and not doc["pending"]:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"saga {order_id} not in {states}: {store.get(str(order_id))}")


def order(broker, worker, *lines, method="card", stock=10):
    customer = register_customer()
    publish(customer)
    for sku, _, _ in lines:
        publish(AddStock(sku=sku, quantity=stock))
    settle(broker, worker)
    command = place_order(customer.customer_id, *lines, payment_method=method)
    publish(command)
    return command


def events_of(stream, kind):
    return [e for e in read_stream(get_database(), stream) if isinstance(e, kind)]


def test_happy_path_confirms_and_commits(saga_settings, rabbitmq_broker, rabbitmq_worker):
    # Given stock, When an order is placed
    command = order(rabbitmq_broker, rabbitmq_worker, ("A", 2, "5.00"), ("B", 1, "3.00"))
    wait_for_saga(command.order_id, "completed")
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then it is paid, confirmed, its stock left the shelf, and every invariant holds
    view = get_order(command.order_id).value
    assert view is not None
    assert view.fulfilment == "confirmed"
    level = get_inventory_level("A")
    assert level is not None
    assert (level.on_hand, level.reserved, level.available) == (8, 0, 8)
    assert check_fulfilment(get_database()).violations == []


def test_out_of_stock_cancels(saga_settings, rabbitmq_broker, rabbitmq_worker):
    # Given too little stock, When an order is placed
    command = order(rabbitmq_broker, rabbitmq_worker, ("A", 5, "5.00"), stock=2)
    saga = wait_for_saga(command.order_id, "cancelled")
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then it is cancelled with the SKU short, and nothing is held
    view = get_order(command.order_id).value
    assert view is not None
    assert (view.fulfilment, view.cancel_reason) == ("cancelled", "out of stock: A")
    assert saga["state"]["compensations"] == []
    assert check_fulfilment(get_database()).violations == []


def test_declined_payment_releases_stock_and_cancels(
    saga_settings, rabbitmq_broker, rabbitmq_worker
):
    # Given a card that declines, When an order is placed
    command = order(rabbitmq_broker, rabbitmq_worker, ("A", 2, "5.00"), method="declined-card")
    saga = wait_for_saga(command.order_id, "cancelled")
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the stock is back on the shelf and the order cancelled for the decline
    assert saga["state"]["compensations"] == ["release_stock"]
    level = get_inventory_level("A")
    assert level is not None
    assert (level.on_hand, level.reserved, level.available) == (10, 0, 10)
    assert check_fulfilment(get_database()).violations == []


def test_payment_that_never_answers_is_compensated_and_a_late_charge_refunded(
    saga_settings, rabbitmq_broker, rabbitmq_worker
):
    # Given a payment slower than the step's deadline
    command = order(rabbitmq_broker, rabbitmq_worker, ("A", 2, "5.00"), method="slow-card")

    # When the deadline passes, and later the charge lands
    wait_for_saga(command.order_id, "cancelled")
    deadline = time.monotonic() + 30
    while not events_of(payment_stream(command.order_id), PaymentCharged):
        assert time.monotonic() < deadline, "the slow charge never landed"
        time.sleep(0.2)
    saga = wait_for_saga(command.order_id, "cancelled")
    while "refund_payment" not in saga["state"]["compensations"]:
        assert time.monotonic() < deadline, "the late charge was not refunded"
        saga = wait_for_saga(command.order_id, "cancelled")
    settle(rabbitmq_broker, rabbitmq_worker)
    time.sleep(0.5)
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the stock was released, the order cancelled, and the money given back
    assert saga["state"]["reason"] == "payment timed out"
    assert saga["state"]["compensations"] == ["release_stock", "refund_payment"]
    assert check_fulfilment(get_database()).violations == []


def test_reply_delivered_twice_is_taken_once(saga_settings, rabbitmq_broker, rabbitmq_worker):
    # Given a completed saga
    command = order(rabbitmq_broker, rabbitmq_worker, ("A", 1, "5.00"))
    before = wait_for_saga(command.order_id, "completed")

    # When each of its replies is delivered twice more
    replies = [
        *read_stream(get_database(), reservation_stream(command.order_id)),
        *read_stream(get_database(), payment_stream(command.order_id)),
    ]
    for reply in replies * 2:
        send_event(reply, sagas.run_fulfilment_saga)
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the saga did not move and nothing was charged again
    after = wait_for_saga(command.order_id, "completed")
    assert after["version"] == before["version"]
    assert len(events_of(payment_stream(command.order_id), PaymentCharged)) == 1
    assert check_fulfilment(get_database()).violations == []


def test_crash_between_saving_and_sending_resends_on_redelivery(
    saga_settings, rabbitmq_broker, rabbitmq_worker, monkeypatch
):
    # Given a saga process that dies after saving the step that commits and confirms,
    # having sent only the first of its two commands
    real_send = sagas.send
    crashed: list[str] = []

    def send_then_crash(message):
        real_send(message)
        if type(message).__name__ == "CommitStock" and not crashed:
            crashed.append(str(message.message_id))
            raise RuntimeError("worker died between sending and forgetting")

    monkeypatch.setattr(sagas, "send", send_then_crash)

    # When an order goes through
    command = order(rabbitmq_broker, rabbitmq_worker, ("A", 2, "5.00"))
    saga = wait_for_saga(command.order_id, "completed")
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the redelivery sent both commands again, and each took effect once
    assert crashed
    assert [h["to"] for h in saga["history"]] == [
        "reserving",
        "charging",
        "confirming",
        "completed",
    ]
    committed = list(read_stream(get_database(), reservation_stream(command.order_id)))
    assert [type(e).__name__ for e in committed] == ["StockReserved", "StockCommitted"]
    level = get_inventory_level("A")
    assert level is not None
    assert level.on_hand == 8
    assert check_fulfilment(get_database()).violations == []
    assert Decimal(check_fulfilment(get_database()).summary()["charged"]) == Decimal("10.00")
