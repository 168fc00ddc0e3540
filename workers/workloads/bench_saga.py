"""``sagaworks bench --saga``: orders through the whole fulfilment saga on the real RabbitMQ.

Orders arrive at a stated rate (0: all at once); each is timed from its ``PlaceOrder`` being
sent to its saga's terminal state (``finished_at``, written by the saga's last step). Stock
and the payment limit are ample and the card good, so every order is confirmed and the
figures are per confirmed order. MongoDB round trips are counted on the workers' client
only (the bench's own polling uses another client); RabbitMQ messages are the enqueues of
the process (commands, events to each subscriber, the saga's delayed deadlines).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dramatiq import Worker
from dramatiq.middleware import Middleware
from pydantic import SecretStr
from pymongo import MongoClient

from messages.customers import RegisterCustomer
from messages.inventory import AddStock
from messages.orders import Address, OrderLine, PlaceOrder
from readstore.db import Document, connect
from sagas.store import SagaStore
from workers.boot import Runtime, boot
from workers.publishing import publish
from workers.runtime.broker import delete_queues
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.progress import progress_bar
from workers.runtime.settings import Settings
from workers.workloads.bench import DEFAULT_AMQP, ORDERS_PER_CUSTOMER, RoundTrips

SKUS = [f"BENCH-{i:02d}" for i in range(10)]


class Enqueued(Middleware):
    """Counts the messages this process sends to RabbitMQ."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        with self._lock:
            self.count += 1


def run(orders: int, rate: float, threads: int, processes: int = 0) -> dict[str, Any]:
    """One process (``processes=0``: the worker runs in this process, and round trips and
    messages are counted in it), or ``processes`` worker processes started as ``sagaworks
    worker`` (latency and throughput; the per-order counts come from a 100-order run in
    this process first: they do not depend on how many processes share the work)."""
    if processes > 0:
        counted = run(min(orders, 100), rate, threads)
        report = _run_in_processes(orders, rate, threads, processes)
        for key in ("mongodb_round_trips_per_order", "rabbitmq_messages_per_order"):
            report[key] = counted[key]
        report["_text"] = _text(report)
        return report
    settings = _settings()
    embedded = None if settings.mongodb() else EmbeddedMongo.start()
    url = settings.mongodb() or (embedded.url if embedded else "")
    trips = RoundTrips()
    database = connect(url, settings.mongodb_db, event_listeners=[trips])
    runtime = boot(settings, database=database)
    enqueued = Enqueued()
    runtime.broker.add_middleware(enqueued)
    worker = Worker(runtime.broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    observer: MongoClient[Document] = MongoClient(url, tz_aware=True)
    try:
        customers = _set_up(orders)
        before = (trips.count, enqueued.count)
        sent = _place(orders, rate, customers)
        docs = _wait(SagaStore(observer[settings.mongodb_db]), set(sent), timeout=60 + orders)
        used = (trips.count - before[0], enqueued.count - before[1])
    finally:
        worker.stop()
        database.client.drop_database(settings.mongodb_db)
        observer.close()
        _close(runtime, embedded, settings)
    return _report(sent, docs, used, rate=rate, threads=threads, settings=settings)


def _run_in_processes(orders: int, rate: float, threads: int, processes: int) -> dict[str, Any]:
    settings = _settings()
    embedded = None if settings.mongodb() else EmbeddedMongo.start()
    url = settings.mongodb() or (embedded.url if embedded else "")
    runtime = boot(settings.model_copy(update={"mongodb_url": SecretStr(url)}))
    env = {
        **os.environ,
        "SAGAWORKS_AMQP_URL": settings.amqp() or DEFAULT_AMQP,
        "SAGAWORKS_MONGODB_URL": url,
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
        "SAGAWORKS_FULFILMENT_SAGA": "true",
        "SAGAWORKS_LOG_LEVEL": settings.log_level,
    }
    command = [sys.executable, "-m", "workers.cli", "worker"]
    command += ["--processes", str(processes), "--threads", str(threads)]
    workers = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    observer: MongoClient[Document] = MongoClient(url, tz_aware=True)
    try:
        customers = _set_up(orders)
        sent = _place(orders, rate, customers)
        docs = _wait(SagaStore(observer[settings.mongodb_db]), set(sent), timeout=60 + orders)
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(timeout=60)
        observer[settings.mongodb_db].client.drop_database(settings.mongodb_db)
        observer.close()
        _close(runtime, embedded, settings)
    report = _report(sent, docs, (0, 0), rate=rate, threads=threads, settings=settings)
    report["worker_processes"] = processes
    return report


def _settings() -> Settings:
    settings = Settings()
    return settings.model_copy(
        update={
            "amqp_url": settings.amqp_url or SecretStr(DEFAULT_AMQP),
            "queue_prefix": f"bench{uuid.uuid4().hex[:8]}.",
            "mongodb_db": f"bench_{uuid.uuid4().hex[:8]}",
            "fulfilment_saga": True,
            "log_level": os.environ.get("SAGAWORKS_LOG_LEVEL", "WARNING"),
        }
    )


def _set_up(orders: int) -> list[uuid.UUID]:
    """Customers (one per 20 orders) and ample stock, ready before the clock starts."""
    customers = [
        RegisterCustomer(customer_id=uuid.uuid4(), name=f"Bench {i}", email=f"b{i}@example.com")
        for i in range(max(1, orders // ORDERS_PER_CUSTOMER))
    ]
    receipts = [publish(customer) for customer in customers]
    receipts += [publish(AddStock(sku=sku, quantity=orders * 10)) for sku in SKUS]
    for receipt in receipts:
        if receipt.wait(60) is None:
            raise RuntimeError("the bench's customer and stock were not set up in time")
    time.sleep(1.0)  # let their projections settle before the clock starts
    return [customer.customer_id for customer in customers]


def _place(orders: int, rate: float, customer_ids: list[uuid.UUID]) -> dict[str, datetime]:
    """Send the orders at ``rate`` per second; when each was sent."""
    address = Address(name="B", street="1 St", city="C", postal_code="1", country="US")
    sent: dict[str, datetime] = {}
    started = time.perf_counter()
    for i in range(orders):
        if rate > 0:
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
        lines = (
            OrderLine(sku=SKUS[i % len(SKUS)], quantity=1, unit_price=Decimal("9.99")),
            OrderLine(sku=SKUS[(i + 3) % len(SKUS)], quantity=2, unit_price=Decimal("4.50")),
        )
        command = PlaceOrder(
            order_id=uuid.uuid4(),
            customer_id=customer_ids[i % len(customer_ids)],
            lines=lines,
            shipping_address=address,
        )
        sent[str(command.order_id)] = datetime.now(UTC)
        publish(command)
    return sent


def _wait(store: SagaStore, ids: set[str], timeout: float) -> list[Document]:
    """The finished sagas, once all are; a cheap count while waiting (the store is measured)."""
    deadline = time.monotonic() + timeout
    finished = {"finished_at": {"$exists": True}}
    with progress_bar("sagas finished", len(ids)) as show:
        while time.monotonic() < deadline:
            done = store.collection.count_documents(finished)
            show(done)
            if done >= len(ids):
                docs = list(store.collection.find(finished, {"status": 1, "finished_at": 1}))
                return [doc for doc in docs if doc["_id"] in ids]
            time.sleep(0.5)
    raise RuntimeError("not every saga finished in time")


def _close(runtime: Runtime, embedded: EmbeddedMongo | None, settings: Settings) -> None:
    delete_queues(settings.amqp() or DEFAULT_AMQP, settings.queue_prefix, runtime.broker)
    runtime.close()
    if embedded is not None:
        embedded.stop()


def _report(
    sent: dict[str, datetime],
    docs: list[Document],
    used: tuple[int, int],
    *,
    rate: float,
    threads: int,
    settings: Settings,
) -> dict[str, Any]:
    latencies = sorted((d["finished_at"] - sent[d["_id"]]).total_seconds() * 1000 for d in docs)
    first, last = min(sent.values()), max(d["finished_at"] for d in docs)
    confirmed = sum(1 for d in docs if d["status"] == "completed")
    orders = len(sent)
    report: dict[str, Any] = {
        "orders": orders,
        "confirmed": confirmed,
        "arrival_rate": rate or "all at once",
        "orders_per_second": round(orders / (last - first).total_seconds(), 1),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "mongodb_round_trips_per_order": round(used[0] / orders, 1),
        "rabbitmq_messages_per_order": round(used[1] / orders, 1),
        "worker_threads": threads,
        "worker_processes": 1,
        "store": settings.describe()["mongodb"],
        "broker": settings.describe()["amqp"],
    }
    report["_text"] = _text(report)
    return report


def _text(report: dict[str, Any]) -> str:
    where = f"{report['worker_processes']} worker process(es) x {report['worker_threads']} threads"
    return "\n".join(
        [
            f"sagaworks bench --saga: {report['orders']} orders at {report['arrival_rate']}/s, "
            + where,
            f"  broker {report['broker']}; store {report['store']}",
            f"  confirmed            {report['confirmed']}/{report['orders']}",
            f"  throughput           {report['orders_per_second']} orders/s through the saga",
            f"  latency PlaceOrder -> terminal   p50 {report['latency_ms_p50']} ms, "
            f"p99 {report['latency_ms_p99']} ms",
            f"  MongoDB round trips  {report['mongodb_round_trips_per_order']} per order",
            f"  RabbitMQ messages    {report['rabbitmq_messages_per_order']} per order",
        ]
    )
