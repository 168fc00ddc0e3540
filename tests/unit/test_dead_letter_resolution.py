"""A dead letter whose nack was lost, or that is processed after all, stops counting as dead."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database

from messages import encode
from readstore.db import Document
from tests.support import register_customer
from workers.deadletters.record import from_envelope
from workers.deadletters.store import DEAD, RESOLVED, DeadLetterStore
from workers.middleware.dead_letters import DeadLetters
from workers.runtime.settings import Settings


class Delivery(MessageProxy):
    """A delivery as RabbitMQ's consumer makes it: with its redelivered flag."""

    def __init__(self, message: dramatiq.Message[Any], redelivered: bool) -> None:
        super().__init__(message)
        self.redelivered = redelivered


def a_delivery(redelivered: bool = False) -> Delivery:
    envelope: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="customers.commands",
        actor_name="handle_customer_command",
        args=(encode(register_customer()),),
        kwargs={},
        options={},
    )
    return Delivery(envelope, redelivered)


def test_a_redelivered_message_processed_after_all_resolves_its_record(
    settings: Settings, database: Database[Document]
) -> None:
    # Given a message recorded as dead (its nack was sent, but the connection died before
    # the broker saw it)
    store = DeadLetterStore(database)
    delivery = a_delivery()
    store.record(from_envelope(delivery, RuntimeError("boom"), "middleware"), copy_in_xq=True)

    # When RabbitMQ delivers it again and it is processed
    again = Delivery(delivery._message, redelivered=True)
    middleware, broker = DeadLetters(settings), StubBroker()
    middleware.before_process_message(broker, again)
    middleware.after_process_message(broker, again, result=None)

    # Then its record is resolved, and its history says how
    entry = store.get(delivery.message_id)
    assert entry is not None and entry["state"] == RESOLVED
    assert entry["history"][-1]["event"] == "resolved"
    assert entry["history"][-1]["reason"] == "processed when redelivered"
    assert store.counts_by_queue() == {}


def test_a_nack_retried_after_a_lost_connection_records_nothing(
    settings: Settings, database: Database[Document]
) -> None:
    # Given a failed message whose first nack failed on a dead connection
    delivery, middleware, broker = a_delivery(), DeadLetters(settings), StubBroker()
    delivery.fail()
    delivery.stuff_exception(RuntimeError("boom"))
    middleware.before_nack(broker, delivery)
    middleware.before_nack(broker, delivery)  # Dramatiq's retry of the nack

    # When Dramatiq calls after_nack (the retry found the delivery tag gone)
    middleware.after_nack(broker, delivery)

    # Then nothing is recorded: RabbitMQ will deliver it again
    assert DeadLetterStore(database).get(delivery.message_id) is None


def test_a_nack_that_went_through_is_recorded(
    settings: Settings, database: Database[Document]
) -> None:
    # Given a failed message nacked at the first try
    delivery, middleware, broker = a_delivery(), DeadLetters(settings), StubBroker()
    delivery.fail()
    delivery.stuff_exception(RuntimeError("boom"))
    middleware.before_nack(broker, delivery)

    # When after_nack runs
    middleware.after_nack(broker, delivery)

    # Then it is recorded as dead
    entry = DeadLetterStore(database).get(delivery.message_id)
    assert entry is not None and entry["state"] == DEAD
