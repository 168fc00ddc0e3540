"""Crash run: the store killed with SIGKILL mid-run, restarted, then ``sagaworks audit``.

``python -m workers.workloads.crash --orders 500 --rate 5 --kills 6`` runs, as an operator
would: an embedded SecantusDB, file-backed, as its own process; a ``sagaworks worker``
process and a ``sagaworks relay`` process; RabbitMQ at ``SAGAWORKS_AMQP_URL`` under a queue
prefix of its own. Orders arrive at ``rate`` (some short of stock, some declined); the
store is killed ``kills`` times while they do, each time restarted on the same path and
port. Once the service is quiet, every order placed is looked up in the store, and
``sagaworks audit --full`` runs as its own process. ``--no-durability`` runs the store
without fsync on commit and the service with ``w=1, j=false``: what a crash then loses.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from pydantic import SecretStr

from messages.customers import RegisterCustomer
from messages.inventory import AddStock
from readstore.db import Document, connect
from readstore.eventlog import commits
from sagas.store import SagaStore
from workers.boot import boot
from workers.ops.queues import queue_counts, queue_figures
from workers.publishing import publish
from workers.runtime.broker import BASE_QUEUES
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings
from workers.workloads.bench import DEFAULT_AMQP
from workers.workloads.demo import CATALOG, random_order
from workers.write.eventstore import EventStore

STEP_DEADLINE = 20.0  # shorter than the default 30 s: a stuck order ends sooner


@dataclass
class Run:
    """One crash run's moving parts and what it saw."""

    settings: Settings
    store: EmbeddedMongo
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    placed: list[str] = field(default_factory=list)
    kills: int = 0


def run(orders: int, rate: float, kills: int, *, durable: bool = True) -> dict[str, Any]:
    """The crash run; the summary says what the store holds and what the audit found."""
    home = Path(tempfile.mkdtemp(prefix="sagaworks-crash-"))
    store = EmbeddedMongo.start(str(home / "store"), sync_on_commit=durable)
    crash = Run(_settings(store.url, durable), store, home)
    crash.env = _environment(crash.settings)
    started = time.monotonic()
    try:
        boot(crash.settings)
        crash.services = [_service(crash, "worker", "--processes", "1", "--threads", "4")]
        crash.services.append(_service(crash, "relay"))
        _workload(crash, orders, rate, kills)
        quiet = _wait_quiet(crash, stall=STEP_DEADLINE * 4)
        summary = {**_look_up(crash), **_audit(crash), "quiet": quiet}
    finally:
        _tear_down(crash)
    summary.update(
        orders=orders, rate=rate, kills=crash.kills, durable=durable,
        elapsed_seconds=round(time.monotonic() - started, 1),
        write_concern=crash.settings.describe()["write_concern"],
        store="embedded SecantusDB, file-backed, "
        + ("fsync on commit" if durable else "no fsync on commit"),
    )  # fmt: skip
    return summary


def _settings(url: str, durable: bool) -> Settings:
    settings = Settings()
    tag = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "amqp_url": settings.amqp_url or SecretStr(DEFAULT_AMQP),
            "mongodb_url": SecretStr(url),
            "mongodb_db": f"crash_{tag}",
            "queue_prefix": f"crash{tag}.",
            "fulfilment_saga": True,
            "saga_step_deadline_seconds": STEP_DEADLINE,
            "write_concern_w": "majority" if durable else "1",
            "write_concern_journal": durable,
            "log_level": "WARNING",
        }
    )


def _environment(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "SAGAWORKS_AMQP_URL": settings.amqp() or DEFAULT_AMQP,
        "SAGAWORKS_MONGODB_URL": settings.mongodb() or "",
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
        "SAGAWORKS_FULFILMENT_SAGA": "true",
        "SAGAWORKS_SAGA_STEP_DEADLINE_SECONDS": str(STEP_DEADLINE),
        "SAGAWORKS_WRITE_CONCERN_W": settings.write_concern_w,
        "SAGAWORKS_WRITE_CONCERN_JOURNAL": str(settings.write_concern_journal).lower(),
        "SAGAWORKS_MAX_RETRIES": "30",
        "SAGAWORKS_MIN_BACKOFF_MS": "100",
        "SAGAWORKS_MAX_BACKOFF_MS": "3000",
        "SAGAWORKS_RELAY_GRACE_SECONDS": "3",
        "SAGAWORKS_LOG_LEVEL": "WARNING",
        "SAGAWORKS_LOG_FORMAT": "json",
    }


def _service(crash: Run, *args: str) -> subprocess.Popen[bytes]:
    """A ``sagaworks`` process in a process group of its own, logging to the run's folder."""
    log = (crash.home / f"{args[0]}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        env=crash.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _workload(crash: Run, orders: int, rate: float, kills: int) -> None:
    """Customers and stock, then the orders at ``rate`` while the store is killed."""
    customers = [uuid.uuid4() for _ in range(20)]
    receipts = [
        publish(RegisterCustomer(customer_id=c, name=f"C{i}", email=f"c{i}@example.com"))
        for i, c in enumerate(customers)
    ]
    demand = max(1, orders * 4 // len(CATALOG))
    receipts += [publish(AddStock(sku=s, quantity=demand * 4 // 5)) for s, _ in CATALOG]
    if not all(receipt.wait(60) for receipt in receipts):
        raise RuntimeError("customers and stock were not set up in time")
    placing = threading.Thread(target=_place, args=(crash, orders, rate, customers))
    placing.start()
    _kill_store(crash, kills, orders / rate)  # here: the server dies with the thread that starts it
    placing.join()


def _place(crash: Run, orders: int, rate: float, customers: list[uuid.UUID]) -> None:
    rng = random.Random(14)
    started = time.monotonic()
    for i in range(orders):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        order = random_order(rng, rng.choice(customers), declined_share=0.15)
        crash.placed.append(str(order.order_id))
        publish(order)


def _kill_store(crash: Run, kills: int, duration: float) -> None:
    """SIGKILL the store ``kills`` times spread over ``duration``, restarting it each time."""
    for i in range(kills):
        time.sleep(max(0.0, duration / (kills + 1) - (1.0 if i else 0.0)))
        crash.store.kill()
        crash.kills += 1
        time.sleep(1.0)  # down for a moment: the service retries meanwhile
        crash.store.restart()


def _wait_quiet(crash: Run, stall: float) -> bool:
    """Until every saga is finished and nothing is queued or undispatched, three looks in a
    row; ``False`` once the sagas left running stop going down for ``stall`` seconds (lost
    writes can leave work that never ends), or after half an hour."""
    database = connect(crash.settings.mongodb() or "", crash.settings.mongodb_db)
    sagas, calm, started = SagaStore(database), 0, time.monotonic()
    fewest, moved = len(crash.placed), time.monotonic()
    while calm < 3 and time.monotonic() - moved < stall and time.monotonic() - started < 1800:
        time.sleep(2.0)
        running = sagas.count_running() + len(crash.placed) - sagas.collection.count_documents({})
        if running < fewest:
            fewest, moved = running, time.monotonic()
        calm = 0 if running or _queued(crash.settings, database) else calm + 1
    database.client.close()
    return calm >= 3


def _queued(settings: Settings, database: Any) -> bool:
    undispatched = EventStore(database).count_undispatched()
    figures = queue_figures(settings, database, queue_counts(settings))
    held = sum((q.ready or 0) + (q.unacked or 0) + (q.delayed or 0) for q in figures)
    return bool(held or undispatched)


def _look_up(crash: Run) -> dict[str, Any]:
    """Every order placed, looked up in the store: is it there, and did it end?"""
    database = connect(crash.settings.mongodb() or "", crash.settings.mongodb_db)
    fates: dict[str, set[str]] = {order_id: set() for order_id in crash.placed}
    reasons: Counter[str] = Counter()
    streams = [f"order-{order_id}" for order_id in crash.placed]
    query: Document = {"stream_id": {"$in": streams}}
    for doc in commits(database).find(query, {"stream_id": 1, "events": 1}):
        fates[doc["stream_id"].removeprefix("order-")].update(e["type"] for e in doc["events"])
        reasons.update(
            e["data"]["reason"].split(":")[0]
            for e in doc["events"]
            if e["type"] == "OrderCancelled"
        )
    database.client.close()
    ended = {"OrderConfirmed", "OrderCancelled"}
    return {
        "cancelled_by_reason": dict(reasons),
        "orders_in_store": sum(1 for f in fates.values() if "OrderPlaced" in f),
        "orders_terminal": sum(1 for f in fates.values() if f & ended),
        "orders_confirmed": sum(1 for f in fates.values() if "OrderConfirmed" in f),
        "orders_cancelled": sum(1 for f in fates.values() if "OrderCancelled" in f),
    }


def _audit(crash: Run) -> dict[str, Any]:
    """``sagaworks audit --full`` as an operator runs it, once the service is quiet."""
    command = [sys.executable, "-m", "workers.cli", "audit", "--full", "--grace", "0", "--json"]
    done = subprocess.run(
        command, env=crash.env, capture_output=True, text=True, timeout=600, check=False
    )
    report = json.loads(done.stdout) if done.stdout.strip() else {"error": done.stderr[-500:]}
    return {"audit_exit_code": done.returncode, "audit": report}


def _tear_down(crash: Run) -> None:
    for service in crash.services:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=60)
    _delete_queues(crash.settings)
    crash.store.stop()
    shutil.rmtree(crash.home, ignore_errors=True)


def _delete_queues(settings: Settings) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp() or DEFAULT_AMQP))
    channel = connection.channel()
    for base in set(BASE_QUEUES.values()):
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(settings.queue_prefix + base + suffix)
    connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.workloads.crash")
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0, help="orders per second")
    parser.add_argument("--kills", type=int, default=6, help="store SIGKILLs during the run")
    parser.add_argument("--no-durability", action="store_true", help="no fsync, w=1, j=false")
    args = parser.parse_args(argv)
    summary = run(args.orders, args.rate, args.kills, durable=not args.no_durability)
    json.dump(summary, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0 if summary["audit_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
