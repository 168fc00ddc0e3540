"""Soak: orders through worker processes on the real RabbitMQ, with faults, kills and stops.

Two ``dramatiq workers.app`` processes run every actor; 5% of handler calls fail
transiently (and are retried), 2% of sent messages are sent twice, a fifth of the orders
pay with a card that declines, stock is short for some, a tenth are cancelled upstream at
a random point of their saga (some before it starts, some after confirmation: refused),
one worker process is killed with SIGKILL mid-run and started again, and the other is
stopped (SIGSTOP) for longer than the step deadline, then continued: the sagas whose
messages it held time out and compensate while their late replies arrive. At the end
every order is confirmed or cancelled, no saga is left running, and the invariants hold.
``SAGAWORKS_SOAK_ORDERS`` sets the number of orders (200 in the suite; 1,000 for a soak).
"""

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from messages.inventory import AddStock
from messages.orders import CancelOrder, OrderLine, PlaceOrder
from readstore.db import get_database
from sagas.store import SagaStore
from tests.support import ADDRESS, register_customer
from workers.ops.invariants import check_fulfilment
from workers.publishing import publish
from workers.subscribers import fulfilment as sagas
from workers.write.eventstore import EventStore
from workers.write.outbox import Relay

ORDERS = int(os.environ.get("SAGAWORKS_SOAK_ORDERS", "200"))
DEADLINE = 8
SKUS = [f"SOAK-{i:02d}" for i in range(20)]


def worker_env(settings, mongo_url):
    return {
        **os.environ,
        "SAGAWORKS_AMQP_URL": settings.amqp() or "",
        "SAGAWORKS_MONGODB_URL": mongo_url,
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
        "SAGAWORKS_FULFILMENT_SAGA": "true",
        "SAGAWORKS_SAGA_STEP_DEADLINE_SECONDS": str(DEADLINE),
        "SAGAWORKS_FAULT_FAILURE_RATE": "0.05",
        "SAGAWORKS_FAULT_DUPLICATE_RATE": "0.02",
        "SAGAWORKS_MAX_RETRIES": "20",
        "SAGAWORKS_MIN_BACKOFF_MS": "20",
        "SAGAWORKS_MAX_BACKOFF_MS": "500",
        "SAGAWORKS_RELAY_GRACE_SECONDS": "3",
        "SAGAWORKS_LOG_LEVEL": "WARNING",
        "SAGAWORKS_LOG_FORMAT": "json",
    }


def start_worker(env, log_path):
    log = open(log_path, "ab")  # noqa: SIM115 -- the child writes to it until it ends
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "workers.app", "--processes", "1", "--threads", "6"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill(process, sig=signal.SIGKILL):
    """Signal the worker's whole process group (Dramatiq's parent and its worker child)."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # a child the parent left behind


def orders(rng, customers):
    for _ in range(ORDERS):
        lines = tuple(
            OrderLine(sku=sku, quantity=rng.randint(1, 2), unit_price=Decimal("3.50"))
            for sku in rng.sample(SKUS, rng.randint(1, 2))
        )
        method = "declined-card" if rng.random() < 0.2 else "card"
        yield PlaceOrder(
            order_id=uuid.uuid4(),
            customer_id=rng.choice(customers),
            lines=lines,
            shipping_address=ADDRESS,
            payment_method=method,
        )


def finished(store):
    return store.collection.count_documents({}) - store.count_running()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_every_order_finishes_and_the_invariants_hold(
    settings, mongo_url, rabbitmq_broker, tmp_path
):
    # Given two worker processes with faults injected, and limited stock
    sagas.configure(settings.model_copy(update={"fulfilment_saga": True}))
    env = worker_env(settings, mongo_url)
    workers = [start_worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
    stop = threading.Event()
    relay = Relay(EventStore(), timedelta(seconds=3))
    threading.Thread(target=relay.run_forever, args=(1.0, stop), daemon=True).start()
    store = SagaStore(get_database())
    rng = random.Random(3)
    try:
        customers = [register_customer(f"S{i}") for i in range(20)]
        receipts = [publish(customer) for customer in customers]
        receipts += [publish(AddStock(sku=s, quantity=rng.randint(60, 90))) for s in SKUS]
        assert all(receipt.wait(60) for receipt in receipts)

        # When the orders arrive with upstream cancellations among them, one worker is
        # killed mid-run and started again, and the other stopped past the step deadline
        placed: list[PlaceOrder] = []
        for command in orders(rng, [c.customer_id for c in customers]):
            publish(command)
            placed.append(command)
            if rng.random() < 0.1:
                cancelled = rng.choice(placed[-20:])
                publish(CancelOrder(order_id=cancelled.order_id, reason="customer cancelled"))
        while finished(store) < ORDERS // 3:
            assert all(w.poll() is None for w in workers), "a worker died on its own"
            time.sleep(0.5)
        kill(workers[0])
        workers[0] = start_worker(env, tmp_path / "worker0.log")
        os.killpg(workers[1].pid, signal.SIGSTOP)
        time.sleep(DEADLINE + 4)
        os.killpg(workers[1].pid, signal.SIGCONT)
        deadline = time.monotonic() + 400
        while finished(store) < ORDERS or store.collection.count_documents({}) < ORDERS:
            assert time.monotonic() < deadline, f"only {finished(store)} sagas finished"
            time.sleep(1)

        # Then every order is finished and, once the read side caught up, the invariants hold
        report = check_fulfilment(get_database())
        while report.violations and time.monotonic() < deadline:
            time.sleep(2)
            report = check_fulfilment(get_database())
        summary = report.summary()
        print(summary)
        assert report.violations == []
        assert summary["orders"] == ORDERS
        assert summary["confirmed"] + summary["cancelled"] == ORDERS
        assert summary["sagas_running"] == 0
        assert summary["confirmed"] > 0
        assert summary["cancelled_by_reason"].get("payment declined", 0) > 0
        assert summary["cancelled_by_reason"].get("customer cancelled", 0) > 0
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker*.log"))
        assert "injected transient failure" in logs
    finally:
        stop.set()
        for worker in workers:
            kill(worker, signal.SIGTERM)
