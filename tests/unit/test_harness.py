"""The in-process harness users test their code with: send, settle, assert what was sent."""

from __future__ import annotations

from pymongo.database import Database

from messages.orders import OrderPlaced
from readstore.db import Document
from tests.support import place_order, register_customer
from workers.runtime.settings import Settings
from workers.testing import TestService


def test_the_harness_runs_a_command_and_shows_its_events(
    settings: Settings, database: Database[Document]
) -> None:
    # Given the service in-process
    with TestService(settings, database) as service:
        customer = register_customer()
        service.send(customer)
        # When an order is placed
        order = place_order(customer.customer_id)
        service.send(order)
        # Then the harness shows the event it sent, and the stream holds it
        [placed] = service.sent(OrderPlaced)
        assert placed.order_id == order.order_id
        assert [type(e) for e in service.events(order.stream_id())] == [OrderPlaced]
        assert service.dead_letters() == []


def test_the_harness_shows_a_rejected_command_as_a_dead_letter(
    settings: Settings, database: Database[Document]
) -> None:
    # Given the service in-process
    with TestService(settings, database) as service:
        # When an order names a customer who was never registered
        service.send(place_order(register_customer().customer_id))
        # Then the command is dead-lettered and no order was placed
        assert len(service.dead_letters()) == 1
        assert service.sent(OrderPlaced) == []
