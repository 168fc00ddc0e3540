"""``sagaworks demo``: the whole service with its fulfilment saga, end to end, with invariants."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from dramatiq import Worker

from messages.customers import RegisterCustomer
from messages.inventory import AddStock
from messages.orders import Address, OrderLine, PlaceOrder
from readstore.db import get_database
from sagas.store import SagaStore
from workers.boot import boot
from workers.ops.invariants import check_fulfilment
from workers.ops.verify import verify_read_models
from workers.publishing import publish
from workers.runtime.broker import delete_queues
from workers.runtime.progress import progress_bar
from workers.runtime.settings import Settings
from workers.workloads.isolation import isolated
from workers.write.eventstore import EventStore
from workers.write.outbox import Relay

CATALOG = [(f"SKU-{i:03d}", Decimal(f"{5 + 3 * i}.{i % 100:02d}")) for i in range(20)]


def wait_for(label: str, count: Callable[[], int], total: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    with progress_bar(label, total) as show:
        done = count()
        while done < total and time.monotonic() < deadline:
            show(done)
            time.sleep(0.2)
            done = count()
        show(done)
    return done


def random_order(rng: random.Random, customer_id: uuid.UUID, declined_share: float) -> PlaceOrder:
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
    method = "declined-card" if rng.random() < declined_share else "card"
    return PlaceOrder(
        order_id=uuid.uuid4(),
        customer_id=customer_id,
        lines=lines,
        shipping_address=address,
        payment_method=method,
    )


def run(orders: int, customers: int, threads: int, seed: int = 7) -> dict[str, Any]:
    settings = _isolated(Settings())
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
        if settings.amqp_url:
            delete_queues(settings.amqp() or "", settings.queue_prefix, runtime.broker)
        runtime.close()


def _isolated(settings: Settings) -> Settings:
    """The demo never shares a deployment's queues or data, whatever the environment says:
    its own queues (removed afterwards) and its own database (kept, named in the summary)."""
    update: dict[str, Any] = {}
    if "SAGAWORKS_LOG_LEVEL" not in os.environ:
        update["log_level"] = "WARNING"
    return isolated(settings, "demo", **update)


def _workload(orders: int, customers: int, seed: int, settings: Settings) -> dict[str, Any]:
    """Restock, place orders (some short of stock, some declined), wait for every saga."""
    rng = random.Random(seed)
    db = get_database()
    sagas = SagaStore(db)
    started = time.monotonic()
    people = _register(customers)
    # About four units an order spread over the catalog: stock for 60-100% of the demand.
    demand = max(1, orders * 4 // len(CATALOG))
    for sku, _ in CATALOG:
        publish(AddStock(sku=sku, quantity=rng.randint(demand * 3 // 5 + 1, demand)))
    for _ in range(orders):
        publish(random_order(rng, rng.choice(people), declined_share=0.1))
    finished = wait_for(
        "sagas finished",
        lambda: (
            orders - sagas.count_running() if sagas.collection.count_documents({}) >= orders else 0
        ),
        orders,
        300,
    )
    elapsed = time.monotonic() - started
    invariants = check_fulfilment(db)
    report = verify_read_models(db)
    summary = {
        **invariants.summary(),
        "orders_placed": orders,
        "orders_finished": finished,
        "consistent": report.consistent and invariants.holds,
        "differences": report.differences[:20],
        "elapsed_seconds": round(elapsed, 2),
        "orders_per_second": round(orders / elapsed, 1),
        **settings.describe(),
    }
    summary["_text"] = _text(summary)
    return summary


def _register(customers: int) -> list[uuid.UUID]:
    """Customers, one in ten with a limit low enough to have payments declined."""
    people = [uuid.uuid4() for _ in range(customers)]
    receipts = [
        publish(
            RegisterCustomer(
                customer_id=c,
                name=f"Customer {i}",
                email=f"c{i}@example.com",
                payment_limit=Decimal("40") if i % 10 == 9 else Decimal("10000"),
            )
        )
        for i, c in enumerate(people)
    ]
    for receipt in receipts:
        receipt.wait(30)
    return people


def _text(s: dict[str, Any]) -> str:
    ok = "yes" if s["invariants_hold"] else "NO"
    lines = [
        "sagaworks demo",
        f"  broker / store      {s['amqp']} / {s['mongodb']} (database {s['database']})",
        f"  orders placed       {s['orders_placed']} (sagas finished {s['orders_finished']})",
        f"  confirmed           {s['confirmed']}",
        f"  cancelled           {s['cancelled']}",
        *(f"    {reason:<18}{n}" for reason, n in s["cancelled_by_reason"].items()),
        "  compensations run   "
        + (", ".join(f"{k} {v}" for k, v in s["compensations"].items()) or "none"),
        f"  money               charged {s['charged']} - refunded {s['refunded']}"
        f" = confirmed {s['confirmed_total']}",
        "  invariants          stock conserved per SKU, nothing left reserved, money conserved,",
        f"                      no double charge, no order both confirmed and cancelled: {ok}",
        f"  sagas running       {s['sagas_running']}",
        "  read models consistent with the event store: "
        + ("yes" if not s["differences"] else "NO"),
        f"  elapsed             {s['elapsed_seconds']} s ({s['orders_per_second']} orders/s)",
    ]
    lines += [f"  ! {d}" for d in [*s["violations"], *s["differences"]]]
    return "\n".join(lines)
