"""The fulfilment saga end to end on the stub broker: confirmed, out of stock, declined."""

from decimal import Decimal

import pytest

from messages.inventory import AddStock
from readstore.db import get_database
from sagas.store import SagaStore
from tests.support import place_order, register_customer, settle
from workers.publishing import publish
from workers.subscribers import fulfilment as sagas
from workers.write.writebehind import WRITE_BEHIND

#: The saga on (the test settings leave it off), with deadlines short: they sit in the
#: delay queue until due, and settle() waits for them.
SAGA_ON = {"fulfilment_saga": True, "saga_step_deadline_seconds": 2.0}


@pytest.fixture(autouse=True)
def saga_on(settings, stub_broker):
    sagas.configure(settings.model_copy(update=SAGA_ON))


def fulfil(broker, worker, *lines, method="card", limit=Decimal("10000"), stock=10):
    customer = register_customer(payment_limit=limit)
    publish(customer)
    for sku, _, _ in lines:
        publish(AddStock(sku=sku, quantity=stock))
    settle(broker, worker)
    order = place_order(customer.customer_id, *lines, payment_method=method)
    publish(order)
    settle(broker, worker)
    WRITE_BEHIND.flush()  # the "sent" marks of the last step
    doc = SagaStore(get_database()).get(str(order.order_id))
    assert doc is not None
    return doc


def test_order_with_stock_and_payment_is_confirmed(stub_broker, stub_worker):
    # Given stock and a good card, When an order is placed
    saga = fulfil(stub_broker, stub_worker, ("A", 2, "5.00"), ("B", 1, "1.00"))

    # Then the saga completes through every step and leaves nothing to send
    assert saga["status"] == "completed"
    assert saga["pending"] == []
    assert [h["to"] for h in saga["history"]] == [
        "reserving",
        "charging",
        "confirming",
        "completed",
    ]


def test_order_out_of_stock_is_cancelled(stub_broker, stub_worker):
    # Given too little stock, When an order is placed
    saga = fulfil(stub_broker, stub_worker, ("A", 20, "5.00"), stock=3)

    # Then it is cancelled for the SKU short, with nothing to compensate
    assert saga["status"] == "cancelled"
    assert saga["state"]["reason"] == "out of stock: A"
    assert saga["state"]["compensations"] == []


def test_declined_payment_releases_stock_and_cancels(stub_broker, stub_worker):
    # Given a card that declines, When an order is placed
    saga = fulfil(stub_broker, stub_worker, ("A", 2, "5.00"), method="declined-card")

    # Then the stock is released before the order is cancelled
    assert saga["status"] == "cancelled"
    assert saga["state"]["reason"] == "payment declined: card declined"
    assert [h["to"] for h in saga["history"]] == [
        "reserving",
        "charging",
        "releasing",
        "cancelling",
        "cancelled",
    ]


def test_order_over_the_customers_limit_is_declined(stub_broker, stub_worker):
    # Given a customer with a low limit, When they order above it
    saga = fulfil(stub_broker, stub_worker, ("A", 2, "50.00"), limit=Decimal("20"))

    # Then the payment is declined and the order cancelled
    assert saga["state"]["reason"] == "payment declined: amount over the customer's limit"
