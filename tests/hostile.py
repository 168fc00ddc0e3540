"""Helpers for hostile-input tests: raw envelopes published with plain pika, worker probes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import dramatiq
import pika
from dramatiq import Worker
from dramatiq.middleware import Middleware

from messages import encode
from tests.conftest import AMQP_URL
from tests.support import register_customer


def envelope(queue: str, actor: str, args: list[Any], **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "queue_name": queue,
        "actor_name": actor,
        "args": args,
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    doc.update(fields)
    return doc


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def customer_envelope(queue: str, **fields: Any) -> dict[str, Any]:
    """A valid ``RegisterCustomer`` envelope for the customers' command queue ``queue``."""
    return envelope(queue, "handle_customer_command", [encode(register_customer())], **fields)


def publish_raw(routing_key: str, payload: bytes, exchange: str = "") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(delivery_mode=2)
        channel.basic_publish(exchange, routing_key, payload, properties, mandatory=True)
    finally:
        connection.close()


def publish_many(routing_key: str, payloads: list[bytes], exchange: str = "") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(delivery_mode=2)
        for payload in payloads:
            channel.basic_publish(exchange, routing_key, payload, properties)
    finally:
        connection.close()


def queue_depth(name: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return int(connection.channel().queue_declare(name, passive=True).method.message_count)
    finally:
        connection.close()


def wait_for(check: Callable[[], bool], timeout: float = 60.0, pause: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(pause)


class Deliveries(Middleware):
    """Counts, per envelope id, the deliveries that reached an actor (a receiving-side tally)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self.lock:
            self.counts[message.message_id] += 1


def threads_alive(worker: Worker) -> tuple[int, int]:
    """(worker threads alive, consumer threads alive) of an in-process Dramatiq worker."""
    workers = sum(thread.is_alive() for thread in worker.workers)
    consumers = sum(thread.is_alive() for thread in worker.consumers.values())
    return workers, consumers
