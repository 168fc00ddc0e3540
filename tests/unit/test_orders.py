"""The Order aggregate's business rules, through the command pipeline."""

from __future__ import annotations

import uuid

import pytest

from messages.errors import CommandRejected
from messages.orders import CancelOrder, ConfirmOrder, order_stream
from readstore.eventlog import read_stream
from tests.support import place_order, register_customer
from workers.write.commands import execute
from workers.write.eventstore import EventStore


@pytest.fixture
def store(stub_broker) -> EventStore:
    return EventStore()


@pytest.fixture
def customer(store):
    command = register_customer()
    execute(command, store)
    return command


def test_no_order_for_an_unknown_customer(store):
    with pytest.raises(CommandRejected, match="unknown customer"):
        execute(place_order(uuid.uuid4()), store)


def test_an_order_is_placed_with_its_total_and_customer_name(store, customer, database):
    # When a registered customer places an order of two lines
    command = place_order(customer.customer_id, ("A", 2, "1.25"), ("B", 1, "0.50"))
    execute(command, store)

    # Then one OrderPlaced records the computed total and the customer's name
    [placed] = read_stream(database, order_stream(command.order_id))
    assert (str(placed.total), placed.customer_name) == ("3.00", "Ada")


def test_a_confirmed_order_cannot_be_cancelled(store, customer):
    command = place_order(customer.customer_id)
    execute(command, store)
    execute(ConfirmOrder(order_id=command.order_id), store)
    with pytest.raises(CommandRejected, match="confirmed"):
        execute(CancelOrder(order_id=command.order_id, reason="too late"), store)


def test_a_cancelled_order_stays_cancelled_when_a_confirmation_arrives(store, customer):
    # Given an order cancelled while its saga's confirmation was on its way
    command = place_order(customer.customer_id)
    execute(command, store)
    execute(CancelOrder(order_id=command.order_id, reason="changed my mind"), store)

    # When the confirmation arrives, Then it commits nothing (the saga compensates on the
    # OrderCancelled it receives) and is not a dead letter
    result = execute(ConfirmOrder(order_id=command.order_id), store)
    assert not result.committed


def test_cancelling_twice_is_a_no_op(store, customer, database):
    command = place_order(customer.customer_id)
    execute(command, store)
    execute(CancelOrder(order_id=command.order_id, reason="one"), store)
    result = execute(CancelOrder(order_id=command.order_id, reason="two"), store)
    assert not result.committed
    assert len(read_stream(database, order_stream(command.order_id))) == 2


def test_an_order_cannot_be_placed_twice(store, customer):
    command = place_order(customer.customer_id)
    execute(command, store)
    again = place_order(customer.customer_id)
    again = again.model_copy(update={"order_id": command.order_id})
    with pytest.raises(CommandRejected, match="already placed"):
        execute(again, store)


def test_confirming_an_unknown_order_is_rejected(store):
    with pytest.raises(CommandRejected, match="unknown order"):
        execute(ConfirmOrder(order_id=uuid.uuid4()), store)
