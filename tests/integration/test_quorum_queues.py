"""Quorum queues for commands and sagas, on the real RabbitMQ."""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from readstore.customers import get_customer_profile
from tests.conftest import delete_queues, require_rabbitmq
from tests.support import register_customer, settle
from workers.boot import boot, rabbitmq_broker
from workers.publishing import publish


def queue_type(name: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:15672/api/queues/%2F/{urllib.parse.quote(name, safe='')}",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["type"])


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
        assert queue_type(prefix + "customers.commands") == "quorum"
        assert queue_type(prefix + "sagas.fulfilment") == "quorum"
        assert queue_type(prefix + "projections.order_summary") == "classic"
    finally:
        worker.stop()
        broker.close()
        delete_queues(settings.queue_prefix)
        dramatiq.set_broker(StubBroker())
