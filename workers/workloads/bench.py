"""``sagaworks bench``: messages per second on the real RabbitMQ, three pipelines, one run.

(a) a no-op Dramatiq actor: the ceiling of broker + worker on this machine;
(b) a naive baseline: plain actors doing the writes of a typical CQRS tutorial (insert the
    event, then one upsert per read model; no idempotency, no outbox);
(c) the sagaworks command pipeline: ``PlaceOrder`` → atomic commit → outbox → two idempotent,
    ordered projections.
Each pipeline delivers three messages per command (the command and two events), runs with
the same worker settings, and is timed from the worker's start until its last message is
processed (the messages are enqueued beforehand).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dramatiq
from dramatiq import Worker
from dramatiq.middleware import Middleware
from pydantic import SecretStr
from pymongo import monitoring

from messages import encode
from readstore.db import get_database
from workers.boot import boot
from workers.publishing import envelope, publish
from workers.runtime.broker import delete_queues, queue_name
from workers.runtime.progress import progress_bar
from workers.runtime.settings import Settings
from workers.workloads.isolation import isolated
from workers.write import outbox

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
ORDERS_PER_CUSTOMER = 20


class RoundTrips(monitoring.CommandListener):
    """Counts the commands this process sends to MongoDB."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Processed(Middleware):
    """Counts messages processed (successfully or not) by actor."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        with self._lock:
            self.counts[message.actor_name] += 1

    def total(self, actors: set[str]) -> int:
        with self._lock:
            return sum(self.counts[a] for a in actors)


def run(commands: int, threads: int) -> dict[str, Any]:
    settings = Settings()
    settings = isolated(
        settings,
        "bench",
        amqp_url=settings.amqp_url or SecretStr(DEFAULT_AMQP),
        log_level=os.environ.get("SAGAWORKS_LOG_LEVEL", "WARNING"),
    )
    prefix = settings.queue_prefix
    trips = RoundTrips()
    monitoring.register(trips)
    runtime = boot(settings)
    counter = Processed()
    broker = runtime.broker
    broker.add_middleware(counter)
    broker.emit_after("process_boot")  # as a worker process does (metrics set up)
    bench = _Bench(broker, counter, trips, threads)
    try:
        results = {
            "a_noop": bench.noop(commands * 3),
            "b_naive": bench.naive(commands),
            "c_sagaworks": bench.sagaworks(commands),
        }
    finally:
        bench.stop()
        get_database().client.drop_database(settings.mongodb_db)
        runtime.close()
        delete_queues(settings.amqp() or DEFAULT_AMQP, prefix, broker)
    return _report(results, commands, threads, settings)


class _Bench:
    """The three pipelines on one broker and one worker, paused between phases."""

    def __init__(
        self, broker: dramatiq.Broker, counter: Processed, trips: RoundTrips, threads: int
    ) -> None:
        self.broker, self.counter, self.trips = broker, counter, trips
        self.db = get_database()
        self.noop_actor = self._actor(_noop, "noop")
        self.summary = self._actor(self._naive_summary, "naive_summary")
        self.profile = self._actor(self._naive_profile, "naive_profile")
        self.place = self._actor(self._naive_place, "naive_place")
        self.worker = Worker(broker, worker_threads=threads, worker_timeout=100)
        self.worker.start()
        self.worker.pause()

    def stop(self) -> None:
        self.worker.stop()

    def _actor(self, fn: Callable[..., None], name: str) -> dramatiq.Actor[Any, Any]:
        actor: dramatiq.Actor[Any, Any] = dramatiq.actor(
            actor_name=name, queue_name=queue_name(f"bench.{name}"), broker=self.broker
        )(fn)
        return actor

    def _timed(self, actors: set[str], expected: int) -> dict[str, Any]:
        before_trips, before = self.trips.count, self.counter.total(actors)
        started = time.perf_counter()
        self.worker.resume()
        with progress_bar(", ".join(sorted(actors))[:22], expected) as show:
            while (done := self.counter.total(actors) - before) < expected:
                show(done)
                time.sleep(0.005)
            show(expected)
        elapsed = time.perf_counter() - started
        self.worker.pause()
        return {
            "messages": expected,
            "seconds": round(elapsed, 3),
            "messages_per_second": round(expected / elapsed, 1),
            "round_trips": self.trips.count - before_trips,
        }

    def noop(self, messages: int) -> dict[str, Any]:
        for i in range(messages):
            self.noop_actor.send({"i": i})
        return self._timed({"noop"}, messages)

    # -- (b): the naive pipeline -------------------------------------------------------------
    def _naive_place(self, command: dict[str, Any]) -> None:
        event = {**command["data"], "at": datetime.now(UTC).isoformat()}
        event["total"] = str(
            sum(Decimal(ln["unit_price"]) * ln["quantity"] for ln in event["lines"])
        )
        self.db.naive_events.insert_one({"type": "OrderPlaced", **event})
        self.summary.send(event)
        self.profile.send(event)

    def _naive_summary(self, event: dict[str, Any]) -> None:
        self.db.naive_order_summary.update_one(
            {"_id": event["order_id"]},
            {"$set": {"status": "pending", "total": event["total"], "lines": event["lines"]}},
            upsert=True,
        )

    def _naive_profile(self, event: dict[str, Any]) -> None:
        self.db.naive_customer_profile.update_one(
            {"_id": event["customer_id"]},
            {"$inc": {"orders_placed": 1}, "$max": {"last_order_at": event["at"]}},
            upsert=True,
        )

    def naive(self, commands: int) -> dict[str, Any]:
        for command in _orders(commands, _customers(commands)):
            self.place.send(encode(command))
        result = self._timed({"naive_place", "naive_summary", "naive_profile"}, commands * 3)
        result["round_trips_per_command"] = round(result["round_trips"] / commands, 2)
        return result

    # -- (c): the sagaworks command pipeline ---------------------------------------------------
    def sagaworks(self, commands: int) -> dict[str, Any]:
        from messages.customers import RegisterCustomer  # noqa: PLC0415 -- bench-only set-up

        customers = [
            RegisterCustomer(customer_id=c, name=f"Bench {i}", email=f"b{i}@example.com")
            for i, c in enumerate(_customers(commands))
        ]
        receipts = [publish(customer) for customer in customers]
        self.worker.resume()
        registered = [receipt.wait(30) for receipt in receipts]
        self.worker.join()
        self.worker.pause()
        assert all(registered), "the bench customers were not registered"
        actors = {"handle_order_command", "project_order_summary", "project_customer_profile"}
        # The pipeline under test: the command and its two read models, nothing downstream.
        with subscribers_only(actors.__contains__):
            for command in _orders(commands, [c.customer_id for c in customers]):
                self.broker.enqueue(envelope(command))
            result = self._timed(actors, commands * 3)
        result["round_trips_per_command"] = round(result["round_trips"] / commands, 2)
        return result


@contextmanager
def subscribers_only(keep: Callable[[str], bool]) -> Iterator[None]:
    """Inside the block, events are published only to the subscribers whose actor name
    ``keep`` keeps (a bench's pipeline and nothing else)."""
    saved = list(outbox.SUBSCRIBERS)
    outbox.SUBSCRIBERS[:] = [(a, t) for a, t in saved if keep(a.actor_name)]
    try:
        yield
    finally:
        outbox.SUBSCRIBERS[:] = saved


def _noop(_: Any) -> None:
    pass


def _customers(commands: int) -> list[uuid.UUID]:
    """One customer per 20 orders: a customer's profile follows each of their orders."""
    return [uuid.uuid4() for _ in range(max(1, commands // ORDERS_PER_CUSTOMER))]


def _orders(count: int, customer_ids: list[uuid.UUID]) -> list[Any]:
    from messages.orders import Address, OrderLine, PlaceOrder  # noqa: PLC0415

    address = Address(name="B", street="1 St", city="C", postal_code="1", country="US")
    lines = (OrderLine(sku="SKU-1", quantity=2, unit_price="9.99"),)
    return [
        PlaceOrder(
            order_id=uuid.uuid4(),
            customer_id=customer_ids[i % len(customer_ids)],
            lines=lines,
            shipping_address=address,
        )
        for i in range(count)
    ]


def _report(
    results: dict[str, dict[str, Any]], commands: int, threads: int, settings: Settings
) -> dict[str, Any]:
    naive = results["b_naive"]["messages_per_second"]
    ours = results["c_sagaworks"]["messages_per_second"]
    report: dict[str, Any] = {
        **results,
        "ratio_c_over_b": round(ours / naive, 2),
        "commands": commands,
        "worker_threads": threads,
        "worker_processes": 1,
        "store": settings.describe()["mongodb"],
        "broker": settings.describe()["amqp"],
    }
    rows = [
        ("(a) no-op actor (ceiling)", results["a_noop"]),
        ("(b) naive baseline", results["b_naive"]),
        ("(c) sagaworks pipeline", results["c_sagaworks"]),
    ]
    lines = [
        f"sagaworks bench: {commands} commands, 3 messages each, 1 process x {threads} threads",
        f"  broker {report['broker']}; store {report['store']}",
    ]
    for label, r in rows:
        trips = r.get("round_trips_per_command")
        extra = f", {trips} MongoDB round trips/command" if trips is not None else ""
        lines.append(f"  {label:<28} {r['messages_per_second']:>8} msg/s{extra}")
    lines.append(f"  ratio (c)/(b): {report['ratio_c_over_b']} (target >= 0.8)")
    report["_text"] = "\n".join(lines)
    return report
