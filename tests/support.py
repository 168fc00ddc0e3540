"""Helpers shared by the tests: build domain commands, run operators at once (``settle`` comes
from workers.testing)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from pymongo import MongoClient, monitoring
from pymongo.database import Database

from messages import caused_by
from messages.customers import RegisterCustomer
from messages.orders import Address, OrderLine, OrderPlaced, PlaceOrder, order_total
from workers.testing.settle import settle

__all__ = ["ADDRESS", "at_once", "order_placed", "place_order", "register_customer", "settle"]

ADDRESS = Address(name="Ada", street="1 Main St", city="Springfield", postal_code="1", country="US")


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


def at_once(act: Callable[[str], None], names: Sequence[str], timeout: float = 120) -> None:
    """Run ``act(name)`` for each of ``names`` on its own thread, all starting together."""
    start = threading.Barrier(len(names))

    def run(name: str) -> None:
        start.wait()
        act(name)

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)


@contextmanager
def listened(mongo_url: str, listener: monitoring.CommandListener) -> Iterator[Database[Any]]:
    """A database of its own, on a client whose commands ``listener`` sees, set as the
    process's database; dropped afterwards."""
    from readstore.db import set_database

    client: MongoClient[Any] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[listener]
    )
    database = client[f"test_{uuid.uuid4().hex[:16]}"]
    set_database(database)
    try:
        yield database
    finally:
        client.drop_database(database.name)
        client.close()
