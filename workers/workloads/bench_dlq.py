"""``sagaworks dlq bench``: seed N dead letters, time the console's pages, list, groups and a
replay of them all."""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pymongo import monitoring
from pymongo.database import Database

from readstore.db import Document, connect
from workers.deadletters.record import Failure
from workers.deadletters.replay import pages, replay, replay_selected
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings
from workers.workloads.bench_console import best_time
from workers.workloads.bench_console import pages as console_pages

log = structlog.get_logger("sagaworks.bench")

ERRORS = [
    ("InvalidMessageError", 'File "workers/broker.py", line 9, in decode_argument'),
    ("RuntimeError", 'File "workers/payments.py", line 7, in charge'),
    ("TimeoutError", 'File "workers/inventory.py", line 5, in reserve'),
    ("KeyError", 'File "readstore/orders.py", line 3, in change'),
]


def failures(count: int, queue: str) -> Iterator[Failure]:
    start = datetime.now(UTC) - timedelta(hours=1)
    for i in range(count):
        error, frame = ERRORS[i % len(ERRORS)]
        message_id = str(uuid.uuid4())
        envelope = (
            f'{{"queue_name": "{queue}", "actor_name": "handle_order_command", "args": [{{}}], '
            f'"kwargs": {{}}, "options": {{}}, "message_id": "{message_id}", '
            f'"message_timestamp": 0}}'
        )
        at = start + timedelta(milliseconds=i)
        yield Failure(
            key=message_id,
            queue=queue,
            actor="handle_order_command",
            envelope=envelope,
            error_type=error,
            reason=f"bench failure {i}",
            traceback=f"Traceback (most recent call last):\n  {frame}\n{error}: bench",
            attempts=1,
            failed_at=at,
            first_failed_at=at,
            source="middleware",
        )


def seed_store(store: DeadLetterStore, count: int, queue: str, batch: int = 1000) -> None:
    """Record ``count`` failures through the store's own path, ``batch`` at a time."""
    chunk: list[Failure] = []
    for failure in failures(count, queue):
        chunk.append(failure)
        if len(chunk) == batch:
            store.record_many(chunk, copy_in_xq=False)
            chunk = []
    store.record_many(chunk, copy_in_xq=False)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    begin = time.perf_counter()
    result = fn()
    return round(time.perf_counter() - begin, 3), result


class StoreTime(monitoring.CommandListener):
    """Seconds the bench's clients waited on the store's replies, and documents updated."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.updated = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.seconds += event.duration_micros / 1e6
        if event.command_name == "update":
            self.updated += int(event.reply.get("nModified", 0))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.seconds += event.duration_micros / 1e6


@contextmanager
def bench_database(
    settings: Settings, listener: StoreTime | None = None
) -> Iterator[Database[Document]]:
    """A throwaway database on the configured MongoDB, or on an embedded SecantusDB."""
    embedded = None if settings.mongodb() else EmbeddedMongo.start()
    url = settings.mongodb() or (embedded.url if embedded else "")
    listeners: list[monitoring.CommandListener] = [listener] if listener else []
    database = connect(url, f"dlq_bench_{uuid.uuid4().hex[:8]}", event_listeners=listeners)
    try:
        yield database
    finally:
        database.client.drop_database(database.name)
        database.client.close()
        if embedded is not None:
            embedded.stop()


def run(
    count: int = 10_000,
    settings: Settings | None = None,
    replayed: int | None = None,
    lock: str | None = None,
) -> dict[str, Any]:
    """Seed ``count`` dead letters, time the pages and listings, replay ``replayed`` of them
    (default all). Each figure is also logged as it is measured. ``lock``: a file to hold
    (``flock``) from the end of the seeding to the last figure."""
    settings = settings or Settings()
    if not settings.amqp():
        raise RuntimeError("set SAGAWORKS_AMQP_URL: the replay goes to RabbitMQ")
    queue = f"dlqbench{uuid.uuid4().hex[:8]}.orders.commands"
    broker = RabbitmqBroker(url=settings.amqp(), confirm_delivery=True, middleware=[])
    waited = StoreTime()
    try:
        with bench_database(settings, waited) as database:
            store = DeadLetterStore(database)
            store.indexes()
            seed, _ = timed(lambda: seed_store(store, count, queue))
            report: dict[str, Any] = {"dead_letters": count, "seed_s": seed}
            report["store"] = "configured MongoDB" if settings.mongodb() else "embedded SecantusDB"
            log.info("dlq_bench.measured", **report)
            with measuring(lock):
                report["load_before"] = os.getloadavg()
                report.update(console_pages(store, broker, settings))
                log.info("dlq_bench.measured", **report)
                report.update(measure(store, broker, queue, replayed, waited))
                report["load_after"] = os.getloadavg()
    finally:
        remove_queues(settings.amqp() or "", queue)
        broker.close()
    return report


@contextmanager
def measuring(lock: str | None) -> Iterator[None]:
    """Hold ``lock`` while timing, at normal priority (the seeding may have run niced)."""
    if lock is None:
        yield
        return
    with Path(lock).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.setpriority(os.PRIO_PGRP, 0, 0)  # this process and its embedded store
        yield


def remove_queues(url: str, queue: str) -> None:
    """Delete the bench's queues on a fresh connection (the broker's may have gone idle)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for suffix in ("", ".DQ", ".XQ"):
        channel.queue_delete(queue + suffix)
    connection.close()


def measure(
    store: DeadLetterStore,
    broker: dramatiq.Broker,
    queue: str,
    replayed: int | None,
    waited: StoreTime | None = None,
) -> dict[str, Any]:
    chosen = Selector(queue=queue)
    report: dict[str, Any] = {
        "list_s": best_time(lambda: store.find(Selector(), 50)),
        "list_filtered_s": best_time(
            lambda: store.find(Selector(queue=queue, error="KeyError"), 50)
        ),
        "list_error_s": best_time(lambda: store.find(Selector(error="TimeoutError"), 50)),
        "groups_s": best_time(store.groups),
        "select_s": best_time(lambda: (store.count(chosen), next(pages(store, chosen, 1000)))),
    }
    log.info("dlq_bench.measured", **report)
    waited = waited or StoreTime()
    before = (waited.seconds, waited.updated)
    if replayed is None:
        replay_s, result = timed(
            lambda: replay_selected(chosen, "bench", broker=broker, store=store)
        )
    else:
        chosen_pages = islice(pages(store, chosen, 1000), replayed // 1000 + 1)
        ids = [i for page in chosen_pages for i in page.seen]
        ids = ids[:replayed]
        replay_s, result = timed(
            lambda: replay(ids, "bench", broker=broker, store=store, batch=1000)
        )
    report |= {"replay_s": replay_s, "replayed": len(result.replayed)}
    report["replay_per_s"] = round(len(result.replayed) / max(replay_s, 1e-9))
    # Where the replay's time went: waiting on the store's replies (claims, reads, counts;
    # the sending thread does not use the store), and the documents it updated.
    report["replay_store_s"] = round(waited.seconds - before[0], 3)
    report["replay_documents_updated"] = waited.updated - before[1]
    report["summary_equals_entries"] = all(
        _counts(store.groups(state)) == _counts(store.aggregated_groups(state))
        for state in ("dead", "replaying", "replayed")
    )
    return report


def _counts(groups: list[Document]) -> list[tuple[str, int]]:
    return sorted((g["_id"], g["count"]) for g in groups)
