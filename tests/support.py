"""Helpers shared by the tests: settle a broker, build domain commands."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from messages import caused_by
from messages.customers import RegisterCustomer
from messages.orders import Address, OrderLine, OrderPlaced, PlaceOrder, order_total

ADDRESS = Address(name="Ada", street="1 Main St", city="Springfield", postal_code="1", country="US")


def settle(broker: dramatiq.Broker, worker: Worker, timeout: float = 60.0) -> None:
    """Wait until every declared queue is empty and the worker idle, through cascades
    (a command's events are enqueued while it is processed) and retries."""
    deadline = time.monotonic() + timeout
    quiet_passes = 0
    while quiet_passes < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the broker did not settle in time")
        busy = False
        for queue in sorted(broker.get_declared_queues()):
            if _pending(broker, queue):
                busy = True
                if isinstance(broker, StubBroker):
                    broker.join(queue, timeout=int(timeout * 1000), fail_fast=False)
                else:
                    broker.join(queue, min_successes=5, idle_time=50, timeout=int(timeout * 1000))
        worker.join()
        quiet_passes = 0 if busy else quiet_passes + 1
        if busy:
            time.sleep(0.05)


def _pending(broker: dramatiq.Broker, queue: str) -> bool:
    if isinstance(broker, StubBroker):
        delayed = broker.queues.get(f"{queue}.DQ")
        return broker.queues[queue].unfinished_tasks > 0 or bool(
            delayed and delayed.unfinished_tasks
        )
    counts: Any = broker.get_queue_message_counts(queue)  # type: ignore[attr-defined]
    return bool(counts[0] or counts[1])


def register_customer(name: str = "Ada", **extra: Any) -> RegisterCustomer:
    return RegisterCustomer(
        customer_id=uuid.uuid4(), name=name, email=f"{name.lower()}@example.com", **extra
    )


def place_order(customer_id: uuid.UUID, *lines: tuple[str, int, str], **extra: Any) -> PlaceOrder:
    order_lines = tuple(
        OrderLine(sku=sku, quantity=qty, unit_price=Decimal(price)) for sku, qty, price in lines
    ) or (OrderLine(sku="SKU-1", quantity=1, unit_price=Decimal("10.00")),)
    return PlaceOrder(
        order_id=uuid.uuid4(),
        customer_id=customer_id,
        lines=order_lines,
        shipping_address=ADDRESS,
        **extra,
    )


def order_placed(command: PlaceOrder, customer_name: str = "Ada") -> OrderPlaced:
    """The event ``command`` records when it succeeds, built by hand (not committed)."""
    return caused_by(
        OrderPlaced,
        command,
        order_id=command.order_id,
        customer_id=command.customer_id,
        customer_name=customer_name,
        lines=command.lines,
        shipping_address=command.shipping_address,
        total=order_total(command.lines),
    )
