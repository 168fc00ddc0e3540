"""``sagaworks demo``: the whole service in one process, end to end, with a summary."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from dramatiq import Worker

from messages.customers import RegisterCustomer
from messages.orders import Address, CancelOrder, ConfirmOrder, OrderLine, PlaceOrder
from readstore.db import get_database
from readstore.orders import OrderSummaries
from workers.eventstore import EventStore
from workers.outbox import Relay
from workers.publishing import publish
from workers.runtime import boot
from workers.settings import Settings
from workers.verify import verify_read_models

CATALOG = [(f"SKU-{i:03d}", Decimal(f"{5 + 3 * i}.{i % 100:02d}")) for i in range(20)]


def progress(label: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{label:<22} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def wait_for(label: str, count: Callable[[], int], total: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    done = count()
    while done < total and time.monotonic() < deadline:
        progress(label, done, total)
        time.sleep(0.2)
        done = count()
    progress(label, done, total)
    return done


def random_order(rng: random.Random, customer_id: uuid.UUID) -> PlaceOrder:
    lines = tuple(
        OrderLine(sku=sku, quantity=rng.randint(1, 3), unit_price=price)
        for sku, price in rng.sample(CATALOG, rng.randint(1, 3))
    )
    address = Address(
        name="Demo Customer",
        street="1 Main St",
        city="Springfield",
        postal_code="12345",
        country="US",
    )
    return PlaceOrder(
        order_id=uuid.uuid4(), customer_id=customer_id, lines=lines, shipping_address=address
    )


def run(orders: int, customers: int, threads: int, seed: int = 7) -> dict[str, Any]:
    settings = Settings()
    if "SAGAWORKS_LOG_LEVEL" not in os.environ:
        settings = settings.model_copy(update={"log_level": "WARNING"})
    runtime = boot(settings)
    worker = Worker(runtime.broker, worker_threads=threads, worker_timeout=100)
    stop = threading.Event()
    relay = Relay(EventStore(), timedelta(seconds=settings.relay_grace_seconds))
    relay_thread = threading.Thread(target=relay.run_forever, args=(1.0, stop), daemon=True)
    worker.start()
    relay_thread.start()
    try:
        return _workload(orders, customers, seed, settings)
    finally:
        stop.set()
        worker.stop()
        runtime.close()


def _workload(orders: int, customers: int, seed: int, settings: Settings) -> dict[str, Any]:
    rng = random.Random(seed)
    db = get_database()
    summaries = db[OrderSummaries.collection_name]
    started = time.monotonic()
    people = [uuid.uuid4() for _ in range(customers)]
    receipts = [
        publish(RegisterCustomer(customer_id=c, name=f"Customer {i}", email=f"c{i}@example.com"))
        for i, c in enumerate(people)
    ]
    for receipt in receipts:
        receipt.wait(30)
    placed = [random_order(rng, rng.choice(people)) for _ in range(orders)]
    for command in placed:
        publish(command)
    wait_for("orders placed", lambda: summaries.count_documents({}), orders, 120)
    for i, command in enumerate(placed):
        if i % 5 == 4:
            publish(CancelOrder(order_id=command.order_id, reason="changed my mind"))
        else:
            publish(ConfirmOrder(order_id=command.order_id))
    finished = wait_for(
        "orders finished",
        lambda: summaries.count_documents({"status": {"$in": ["confirmed", "cancelled"]}}),
        orders,
        120,
    )
    elapsed = time.monotonic() - started
    report = verify_read_models(db)
    commands = customers + 2 * orders
    summary = {
        "orders_placed": orders,
        "orders_finished": finished,
        "confirmed": summaries.count_documents({"status": "confirmed"}),
        "cancelled": summaries.count_documents({"status": "cancelled"}),
        "consistent": report.consistent,
        "differences": report.differences[:20],
        "elapsed_seconds": round(elapsed, 2),
        "commands_per_second": round(commands / elapsed, 1),
        **settings.describe(),
    }
    summary["_text"] = _text(summary)
    return summary


def _text(s: dict[str, Any]) -> str:
    lines = [
        "sagaworks demo",
        f"  broker / store      {s['amqp']} / {s['mongodb']}",
        f"  orders placed       {s['orders_placed']} (finished {s['orders_finished']}: "
        f"{s['confirmed']} confirmed, {s['cancelled']} cancelled)",
        f"  read models consistent with the event store: {'yes' if s['consistent'] else 'NO'}",
        f"  elapsed             {s['elapsed_seconds']} s",
        f"  throughput          {s['commands_per_second']} commands/s",
    ]
    lines += [f"  ! {d}" for d in s["differences"]]
    return "\n".join(lines)
