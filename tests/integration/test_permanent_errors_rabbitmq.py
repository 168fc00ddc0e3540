"""A permanent error raised in readstore/ or sagas/ skips retries on the real RabbitMQ."""

from __future__ import annotations

from decimal import Decimal

from dramatiq import Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pymongo.database import Database

from messages import encode
from messages.customers import CustomerRegistered
from readstore.db import Document
from tests.support import order_placed, place_order, register_customer, settle
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.subscribers.fulfilment import run_fulfilment_saga
from workers.subscribers.projections import project_order_summary


def test_a_projection_given_an_event_it_cannot_place_dead_letters_it_at_once(
    rabbitmq_broker: RabbitmqBroker, rabbitmq_worker: Worker, database: Database[Document]
) -> None:
    # Given an order event that was never recorded in a stream (no stream position)
    event = order_placed(place_order(register_customer().customer_id))
    # When the order summary receives it
    project_order_summary.send(encode(event))
    settle(rabbitmq_broker, rabbitmq_worker)
    # Then it is dead-lettered after one attempt, as a permanent error
    [entry] = DeadLetterStore(database).find(Selector(actor=project_order_summary.actor_name))
    assert entry["attempts"] == 1


def test_a_saga_given_a_message_without_an_order_dead_letters_it_at_once(
    rabbitmq_broker: RabbitmqBroker, rabbitmq_worker: Worker, database: Database[Document]
) -> None:
    # Given an event the fulfilment saga cannot key (it names no order)
    command = register_customer()
    event = CustomerRegistered(
        customer_id=command.customer_id,
        full_name=command.name,
        email=command.email,
        payment_limit=Decimal("100.00"),
        marketing_opt_in=False,
    ).recorded(command.stream_id(), 1)
    # When the saga actor receives it
    run_fulfilment_saga.send(encode(event))
    settle(rabbitmq_broker, rabbitmq_worker)
    # Then it is dead-lettered after one attempt, as a permanent error
    [entry] = DeadLetterStore(database).find(Selector(actor=run_fulfilment_saga.actor_name))
    assert entry["attempts"] == 1
