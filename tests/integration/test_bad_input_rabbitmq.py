"""Bad input published with plain pika: dead-lettered at once with its reason, workers unharmed.

The publishing and the checks here use only pika, pymongo and JSON, as an upstream service
in any language would; the worker under test is the project's.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pytest

from tests.conftest import AMQP_URL


def envelope(queue: str, actor: str, args: list[Any]) -> bytes:
    message_id = str(uuid.uuid4())
    return json.dumps(
        {
            "queue_name": queue,
            "actor_name": actor,
            "args": args,
            "kwargs": {},
            "options": {},
            "message_id": message_id,
            "message_timestamp": int(time.time() * 1000),
        }
    ).encode()


def domain(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    message_id = str(uuid.uuid4())
    return {
        "type": type_,
        "version": 1,
        "message_id": message_id,
        "correlation_id": message_id,
        "causation_id": None,
        "occurred_at": "2026-11-22T06:00:00Z",
        "data": data,
    }


def publish_raw(queue: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    connection.close()


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(0.2)


def poison(queue: str) -> dict[str, bytes]:
    order = {
        "order_id": str(uuid.uuid4()),
        "customer_id": str(uuid.uuid4()),
        "lines": [{"sku": "SKU-1", "quantity": -1, "unit_price": "1.00"}],
        "shipping_address": {
            "name": "A",
            "street": "B",
            "city": "C",
            "postal_code": "D",
            "country": "GB",
        },
    }
    return {
        "not_json": b"this is not JSON {",
        "unknown_type": envelope(queue, "handle_order_command", [domain("MakeCoffee", {})]),
        "schema_violation": envelope(queue, "handle_order_command", [domain("PlaceOrder", order)]),
        "unknown_actor": envelope(queue, "no_such_actor", [domain("ConfirmOrder", {})]),
    }


@pytest.mark.rabbitmq
def test_bad_messages_are_dead_lettered_at_once_and_the_worker_keeps_serving(
    rabbitmq_broker, rabbitmq_worker, settings, database, caplog, capfd
):
    # Given a worker serving the order and customer command queues
    orders = settings.queue_prefix + "orders.commands"
    customers = settings.queue_prefix + "customers.commands"
    caplog.set_level(logging.INFO)

    # When four kinds of bad message are published to it
    bodies = poison(orders)
    for body in bodies.values():
        publish_raw(orders, body)

    # Then each reaches the dead letters within seconds, after one attempt, with a reason
    letters = database["dead_letters"]
    wait_for(lambda: letters.count_documents({}) >= len(bodies))
    entries = list(letters.find())
    assert len(entries) == len(bodies)
    assert all(entry["attempts"] == 1 for entry in entries)
    reasons = " | ".join(entry["reason"] for entry in entries)
    assert "not JSON" in reasons or "decode" in reasons.lower()
    assert "unknown message type 'MakeCoffee'" in reasons
    assert "lines.0.quantity" in reasons
    assert "no_such_actor" in reasons

    # And the failures were logged with their causes, without the payloads (whether the
    # consumer refused the envelope or the actor failed on it: either path logs the record)
    written = capfd.readouterr()
    logged = caplog.text + written.out + written.err
    assert "unknown message type" in written.err + written.out
    assert "12 St James" not in logged

    # And the worker still serves good messages
    customer_id = str(uuid.uuid4())
    good = domain(
        "RegisterCustomer", {"customer_id": customer_id, "name": "Ada", "email": "a@example.com"}
    )
    publish_raw(customers, envelope(customers, "handle_customer_command", [good]))
    wait_for(lambda: database["customer_profile"].count_documents({"_id": customer_id}) == 1)
