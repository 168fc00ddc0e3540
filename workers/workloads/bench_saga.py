"""``sagaworks bench --saga``: orders through the whole fulfilment saga on the real RabbitMQ.

Orders arrive at a stated rate (0: all at once); each is timed from its ``PlaceOrder`` being
sent to its saga's terminal state (``finished_at``, written by the saga's last step). Stock
and the payment limit are ample and the card good, so every order is confirmed and the
figures are per confirmed order. With the worker in this process (``processes=0``) every
MongoDB command, publish and delivery is attributed to the step (message) that caused it
(``workers.workloads.instruments``), and the worker threads' waits on the store and on the
broker are timed; the bench's own polling uses another client and is not counted. Counting
ends once everything the orders caused has run, including step deadlines held as delayed
messages until they come due. The store's own time per collection over the same span comes
from its ``top`` command (``workers.workloads.storetime``); that one includes the bench's
polling of ``sagas``, a count every 2 s.
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
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dramatiq import Worker
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
from workers.workloads import storetime
from workers.workloads.bench import DEFAULT_AMQP, ORDERS_PER_CUSTOMER, subscribers_only
from workers.workloads.instruments import Ledger, render, table
from workers.workloads.isolation import isolated
from workers.write.writebehind import WRITE_BEHIND

SKUS = [f"BENCH-{i:02d}" for i in range(10)]


def run(
    orders: int, rate: float, threads: int, processes: int = 0, *, read_models: bool = True
) -> dict[str, Any]:
    """One process (``processes=0``: the worker runs in this process, and round trips and
    messages are counted in it), or ``processes`` worker processes started as ``sagaworks
    worker`` (latency and throughput; the per-order counts come from a 100-order run in
    this process first: they do not depend on how many processes share the work).

    ``read_models=False`` publishes the events to the saga alone, none to the projections:
    the write side's ceiling, to compare with the whole (in this process only)."""
    if processes > 0:
        if not read_models:
            raise ValueError("the read models can be left out only with the worker in process")
        counted = run(min(orders, 100), rate, threads)
        report = _run_in_processes(orders, rate, threads, processes)
        for key in COUNTED:
            report[key] = counted[key]
        report["_text"] = _text(report)
        return report
    settings = _settings()
    embedded = None if settings.mongodb() else EmbeddedMongo.start()
    url = settings.mongodb() or (embedded.url if embedded else "")
    ledger = Ledger()
    database = connect(url, settings.mongodb_db, event_listeners=[ledger.store_listener()])
    runtime = boot(settings, database=database)
    ledger.install(runtime.broker)
    runtime.broker.emit_after("process_boot")  # as a worker process does (metrics set up)
    worker = Worker(runtime.broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    observer: MongoClient[Document] = MongoClient(url, tz_aware=True)
    try:
        customers = _set_up(orders)
        ledger.reset()
        top_before = storetime.read_top(observer, settings.mongodb_db)
        cpu_before = _store_cpu(embedded)
        with subscribers_only(_subscribed(read_models)):
            sent = _place(orders, rate, customers)
            docs = _wait(SagaStore(observer[settings.mongodb_db]), set(sent), timeout=60 + orders)
            _settle(ledger, settings.saga_step_deadline_seconds)
        _write_behind()
        top_after = storetime.read_top(observer, settings.mongodb_db)
        cpu_after = _store_cpu(embedded)
    finally:
        worker.stop()
        ledger.uninstall()
        database.client.drop_database(settings.mongodb_db)
        observer.close()
        _close(runtime, embedded, settings)
    report = _report(sent, docs, rate=rate, threads=threads, settings=settings)
    report["read_models"] = read_models
    report["store_time"] = _store_time(top_before, top_after, report["confirmed"])
    if cpu_before is not None and cpu_after is not None:
        used_seconds = cpu_after - cpu_before
        per_order = used_seconds * 1000 / max(report["confirmed"], 1)
        report["store_cpu_ms_per_order"] = round(per_order, 1)
        report["store_cpu_share"] = round(used_seconds / max(report["seconds"], 0.001), 3)
    return _attribute(report, ledger, threads)


def _store_cpu(embedded: EmbeddedMongo | None) -> float | None:
    """The embedded store's CPU seconds so far; ``None`` for another store (or where the
    system does not tell)."""
    return None if embedded is None else storetime.process_cpu_seconds(embedded.process.pid)


def _store_time(
    before: storetime.Reading | str, after: storetime.Reading | str, confirmed: int
) -> list[dict[str, Any]] | str:
    """The store's time per confirmed order by collection, or why it has none."""
    if isinstance(before, str):
        return before
    if isinstance(after, str):
        return after
    return storetime.rows(before, after, max(confirmed, 1))


def _subscribed(read_models: bool) -> Callable[[str], bool]:
    """Which subscribers the orders' events go to: all, or all but the projections."""
    from workers.subscribers.projections import PROJECTIONS  # noqa: PLC0415 -- after boot

    projections = {actor.actor_name for _, actor in PROJECTIONS.values()}
    return lambda actor_name: read_models or actor_name not in projections


MAX_SETTLE_SECONDS = 60
COUNTED = (
    "mongodb_round_trips_per_order",
    "mongodb_documents_written_per_order",
    "rabbitmq_publishes_per_order",
    "rabbitmq_deliveries_per_order",
    "confirm_waits_per_handled_message",
    "worker_time",
    "steps",
    "store_time",
)


def _settle(ledger: Ledger, deadline_seconds: float) -> None:
    """Until what the orders caused has run: quiet for a second (the sweeper's polls aside,
    which never stop), and any step deadline held
    as a delayed message (older designs) has come due and been handled, if it is due within
    a minute (a longer deadline's re-enqueue and delivery are left uncounted)."""
    held = any(name.startswith("(delayed") for name, _ in ledger.snapshot())
    wait = deadline_seconds + 3 if held and deadline_seconds <= MAX_SETTLE_SECONDS else 0
    until = time.monotonic() + wait
    last = -1
    while True:
        time.sleep(1.0)
        seen = ledger.activity()
        if seen == last and time.monotonic() >= until:
            return
        last = seen


def _write_behind() -> None:
    """Write what the write-behind still holds (marks held for a saga's next step), on a
    thread of its name: it is part of what the orders cost."""
    thread = threading.Thread(target=WRITE_BEHIND.flush, name="write-behind")
    thread.start()
    thread.join()


def _attribute(report: dict[str, Any], ledger: Ledger, threads: int) -> dict[str, Any]:
    """The counts per confirmed order, by step, and the worker threads' waits."""
    confirmed = max(report["confirmed"], 1)
    total, handled = ledger.totals(), ledger.handled()
    thread_seconds = threads * report["seconds"]
    report["mongodb_round_trips_per_order"] = round(total.round_trips / confirmed, 1)
    report["mongodb_documents_written_per_order"] = round(total.writes / confirmed, 1)
    report["rabbitmq_publishes_per_order"] = round(total.publishes / confirmed, 1)
    report["rabbitmq_deliveries_per_order"] = round(total.deliveries / confirmed, 1)
    waits = handled.confirm_waits / max(handled.deliveries, 1)
    report["confirm_waits_per_handled_message"] = round(waits, 2)
    report["worker_time"] = {
        "busy": round(handled.busy_seconds / thread_seconds, 3),
        "waiting_on_store": round(handled.store_seconds / thread_seconds, 3),
        "waiting_on_broker": round(handled.broker_seconds / thread_seconds, 3),
    }
    report["steps"] = table(ledger, confirmed)
    report["_text"] = _text(report)
    return report


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
    report = _report(sent, docs, rate=rate, threads=threads, settings=settings)
    report["worker_processes"] = processes
    return report


def _settings() -> Settings:
    settings = Settings()
    return isolated(
        settings,
        "bench",
        amqp_url=settings.amqp_url or SecretStr(DEFAULT_AMQP),
        fulfilment_saga=True,
        log_level=os.environ.get("SAGAWORKS_LOG_LEVEL", "WARNING"),
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
    """The finished sagas, once all are. The count reads the whole collection on the embedded
    store, so it runs every 2 s: at 0.5 s it took 5% of the store's time it measures."""
    deadline = time.monotonic() + timeout
    finished = {"finished_at": {"$exists": True}}
    with progress_bar("sagas finished", len(ids)) as show:
        while time.monotonic() < deadline:
            done = store.collection.count_documents(finished)
            show(done)
            if done >= len(ids):
                docs = list(store.collection.find(finished, {"status": 1, "finished_at": 1}))
                return [doc for doc in docs if doc["_id"] in ids]
            time.sleep(2.0)
    raise RuntimeError("not every saga finished in time")


def _close(runtime: Runtime, embedded: EmbeddedMongo | None, settings: Settings) -> None:
    delete_queues(settings.amqp() or DEFAULT_AMQP, settings.queue_prefix, runtime.broker)
    runtime.close()
    if embedded is not None:
        embedded.stop()


def _report(
    sent: dict[str, datetime],
    docs: list[Document],
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
        "seconds": round((last - first).total_seconds(), 2),
        "orders_per_second": round(orders / (last - first).total_seconds(), 1),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "worker_threads": threads,
        "worker_processes": 1,
        "read_models": True,
        "store": settings.describe()["mongodb"],
        "broker": settings.describe()["amqp"],
    }
    report["_text"] = _text(report)
    return report


def _text(report: dict[str, Any]) -> str:
    where = f"{report['worker_processes']} worker process(es) x {report['worker_threads']} threads"
    if report.get("read_models") is False:
        where += ", read models left out (the write side alone)"
    lines = [
        f"sagaworks bench --saga: {report['orders']} orders at {report['arrival_rate']}/s, "
        + where,
        f"  broker {report['broker']}; store {report['store']}",
        f"  confirmed            {report['confirmed']}/{report['orders']}",
        f"  throughput           {report['orders_per_second']} orders/s through the saga",
        f"  latency PlaceOrder -> terminal   p50 {report['latency_ms_p50']} ms, "
        f"p99 {report['latency_ms_p99']} ms",
    ]
    if "worker_time" in report:
        lines += _counted_text(report)
    return "\n".join(lines)


def _store_cpu_text(report: dict[str, Any]) -> list[str]:
    if "store_cpu_ms_per_order" not in report:
        return []
    return [
        f"  embedded store       {report['store_cpu_ms_per_order']} ms of CPU per confirmed "
        f"order, {report['store_cpu_share']:.0%} of a core from the first order to the last"
    ]


def _counted_text(report: dict[str, Any]) -> list[str]:
    time_ = report["worker_time"]
    return [
        f"  per confirmed order  {report['mongodb_round_trips_per_order']} store round trips "
        f"({report['mongodb_documents_written_per_order']} documents written), "
        f"{report['rabbitmq_publishes_per_order']} publishes, "
        f"{report['rabbitmq_deliveries_per_order']} deliveries",
        f"  confirm waits        {report['confirm_waits_per_handled_message']} per handled message",
        f"  worker thread time   busy {time_['busy']:.0%}, waiting on the store "
        f"{time_['waiting_on_store']:.0%}, on the broker {time_['waiting_on_broker']:.0%}",
        *_store_cpu_text(report),
        "",
        *render(report["steps"]),
        "",
        *storetime.render(report.get("store_time", "not measured")),
    ]
