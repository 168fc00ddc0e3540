"""A publisher for the sagaworks order service in plain pika (no sagaworks import).

It registers a customer, restocks, places orders and awaits each command's outcome on
RabbitMQ's direct reply-to; it publishes persistent, confirmed and mandatory, so a command
to a queue that does not exist comes back instead of vanishing. One JSON line per step.

    SAGAWORKS_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ SAGAWORKS_QUEUE_PREFIX= \
        python examples/python/publisher.py
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pika

URL = os.environ.get("SAGAWORKS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PREFIX = os.environ.get("SAGAWORKS_QUEUE_PREFIX", "")
TIMEOUT = float(os.environ.get("OUTCOME_TIMEOUT", "30"))
REPLY_TO = "amq.rabbitmq.reply-to"
#: The command queues and their actors, as the AsyncAPI document lists them.
QUEUES = {
    "customers": ("customers.commands", "handle_customer_command"),
    "orders": ("orders.commands", "handle_order_command"),
    "inventory": ("inventory.commands", "handle_inventory_command"),
}


def command(type_name: str, data: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    """The domain message: ``message_id`` is the idempotency key (keep it on a re-send)."""
    message_id = message_id or str(uuid.uuid4())
    return {
        "type": type_name,
        "version": 1,
        "message_id": message_id,
        "correlation_id": message_id,
        "causation_id": None,
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def envelope(context: str, message: dict[str, Any], queue: str | None = None) -> dict[str, Any]:
    """Dramatiq's envelope: queue_name equals the routing key; the message is its one arg."""
    base, actor = QUEUES[context]
    return {
        "queue_name": queue or PREFIX + base,
        "actor_name": actor,
        "args": [message],
        "kwargs": {},
        "options": {},
        "message_id": message["message_id"],
        "message_timestamp": int(time.time() * 1000),
    }


class Client:
    """One channel: confirms on, direct reply-to consumed, answers matched by correlation id."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.answers: dict[str, dict[str, Any]] = {}
        self.channel.basic_consume(REPLY_TO, self._on_answer, auto_ack=True)
        self.channel.confirm_delivery()

    def _on_answer(self, _ch: Any, _method: Any, properties: Any, body: bytes) -> None:
        self.answers[properties.correlation_id] = json.loads(body)

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        """Publish and wait for the outcome; ``returned`` if no queue took the message."""
        correlation_id = str(uuid.uuid4())
        properties = pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
        )
        try:
            self.channel.basic_publish(
                "", body["queue_name"], json.dumps(body).encode(), properties, mandatory=True
            )
        except pika.exceptions.UnroutableError:
            return {"outcome": "returned", "reason": f"no queue {body['queue_name']!r}"}
        deadline = time.monotonic() + TIMEOUT
        while correlation_id not in self.answers and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.2)
        return self.answers.pop(correlation_id, {"outcome": "no answer"})

    def close(self) -> None:
        self.connection.close()


def report(step: str, answer: dict[str, Any]) -> None:
    keep = ("outcome", "token", "error", "reason")
    print(json.dumps({"step": step, **{k: answer[k] for k in keep if k in answer}}), flush=True)


def order(customer_id: str, price: Any) -> dict[str, Any]:
    address = {
        "name": "Ada",
        "street": "1 Main St",
        "city": "Springfield",
        "postal_code": "12345",
        "country": "US",
    }
    line = {"sku": "PY-SKU-1", "quantity": 2, "unit_price": price}
    data = {"order_id": str(uuid.uuid4()), "customer_id": customer_id, "lines": [line]}
    return command("PlaceOrder", {**data, "shipping_address": address})


def main() -> int:
    client = Client(URL)
    customer_id = str(uuid.uuid4())
    try:
        register = {"customer_id": customer_id, "name": "Ada", "email": "ada@example.com"}
        report(
            "register", client.send(envelope("customers", command("RegisterCustomer", register)))
        )
        stock = command("AddStock", {"sku": "PY-SKU-1", "quantity": 10})
        report("restock", client.send(envelope("inventory", stock)))
        placed = order(customer_id, "9.99")
        report("place", client.send(envelope("orders", placed)))
        report("place again", client.send(envelope("orders", placed)))
        report(
            "unknown customer", client.send(envelope("orders", order(str(uuid.uuid4()), "1.00")))
        )
        report("money as a number", client.send(envelope("orders", order(customer_id, 9.99))))
        missing = envelope("orders", order(customer_id, "1.00"), queue=PREFIX + "no.such.queue")
        report("missing queue", client.send(missing))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
