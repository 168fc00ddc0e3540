"""The pipeline end to end on the stub broker: command → commit → events → read models."""

from decimal import Decimal

from readstore.customers import get_customer_profile
from readstore.orders import get_order
from tests.support import place_order, register_customer, settle
from workers.publishing import publish


def test_placed_order_reaches_both_read_models(stub_broker, stub_worker):
    # Given a registered customer
    customer = register_customer()
    publish(customer)
    settle(stub_broker, stub_worker)

    # When they place an order
    command = place_order(customer.customer_id, ("A", 2, "1.50"), ("B", 1, "2.00"))
    receipt = publish(command)
    settle(stub_broker, stub_worker)

    # Then both read models answer, consistent with the write's token
    token = receipt.wait(1)
    assert token is not None
    order = get_order(command.order_id, token)
    assert not order.stale
    assert order.value is not None
    assert order.value.total == Decimal("5.00")
    assert order.value.customer_name == "Ada"
    profile = get_customer_profile(customer.customer_id, token).value
    assert profile is not None
    assert profile.orders_placed == 1
