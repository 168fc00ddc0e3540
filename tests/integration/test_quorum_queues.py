"""Quorum queues for commands and sagas, on the real RabbitMQ."""

from __future__ import annotations

import dramatiq
import pika
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from readstore.customers import get_customer_profile
from tests.conftest import AMQP_URL, delete_queues, require_rabbitmq
from tests.support import register_customer, settle
from workers.boot import boot, rabbitmq_broker
from workers.publishing import publish
from workers.runtime.broker import Rabbitmq


def queue_type(broker: Rabbitmq, name: str) -> str:
    """ "quorum" or "classic", over AMQP (no management API): RabbitMQ refuses to declare a
    queue again as a quorum queue unless it is one."""
    arguments = {**broker._build_queue_arguments(name), "x-queue-type": "quorum"}
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_declare(name, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:  # PRECONDITION_FAILED: inequivalent x-queue-type
            raise
        return "classic"
    finally:
        if connection.is_open:
            connection.close()
    return "quorum"


@pytest.mark.rabbitmq
def test_command_and_saga_queues_are_quorum_queues_and_serve(settings, database):
    # Given workers on a broker that declares quorum queues
    require_rabbitmq()
    settings = settings.model_copy(update={"quorum_queues": True})
    broker = rabbitmq_broker(settings)
    boot(settings, broker=broker, database=database, logging=False)
    worker = Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        # When a command goes through them
        customer = register_customer()
        publish(customer)
        settle(broker, worker)

        # Then it was handled, and only the command and saga queues are quorum queues
        assert get_customer_profile(customer.customer_id).value is not None
        prefix = settings.queue_prefix
        assert queue_type(broker, prefix + "customers.commands") == "quorum"
        assert queue_type(broker, prefix + "sagas.fulfilment") == "quorum"
        assert queue_type(broker, prefix + "projections.order_summary") == "classic"
    finally:
        worker.stop()
        broker.close()
        delete_queues(settings.queue_prefix)
        dramatiq.set_broker(StubBroker())
