"""``sagaworks dlq bench``: seed N dead letters, time the console's pages, list, groups and a
replay of them all."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pymongo.database import Database

from readstore.db import Document, connect
from workers.deadletters.record import Failure
from workers.deadletters.replay import replay
from workers.deadletters.store import DeadLetterStore, Selector
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings
from workers.workloads.bench_console import pages

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


@contextmanager
def bench_database(settings: Settings) -> Iterator[Database[Document]]:
    """A throwaway database on the configured MongoDB, or on an embedded SecantusDB."""
    embedded = None if settings.mongodb() else EmbeddedMongo.start()
    url = settings.mongodb() or (embedded.url if embedded else "")
    database = connect(url, f"dlq_bench_{uuid.uuid4().hex[:8]}")
    try:
        yield database
    finally:
        database.client.drop_database(database.name)
        database.client.close()
        if embedded is not None:
            embedded.stop()


def run(
    count: int = 10_000, settings: Settings | None = None, replayed: int | None = None
) -> dict[str, Any]:
    """Seed ``count`` dead letters, time the pages and listings, replay ``replayed`` of them
    (default all). Each figure is also logged as it is measured."""
    settings = settings or Settings()
    if not settings.amqp():
        raise RuntimeError("set SAGAWORKS_AMQP_URL: the replay goes to RabbitMQ")
    queue = f"dlqbench{uuid.uuid4().hex[:8]}.orders.commands"
    broker = RabbitmqBroker(url=settings.amqp(), confirm_delivery=True, middleware=[])
    try:
        with bench_database(settings) as database:
            store = DeadLetterStore(database)
            store.indexes()
            seed, _ = timed(lambda: seed_store(store, count, queue))
            report: dict[str, Any] = {"dead_letters": count, "seed_s": seed}
            report["store"] = "configured MongoDB" if settings.mongodb() else "embedded SecantusDB"
            log.info("dlq_bench.measured", **report)
            report.update(pages(store, broker, settings))
            log.info("dlq_bench.measured", **report)
            report.update(measure(store, broker, queue, replayed))
    finally:
        remove_queues(settings.amqp() or "", queue)
        broker.close()
    return report


def remove_queues(url: str, queue: str) -> None:
    """Delete the bench's queues on a fresh connection (the broker's may have gone idle)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for suffix in ("", ".DQ", ".XQ"):
        channel.queue_delete(queue + suffix)
    connection.close()


def measure(
    store: DeadLetterStore, broker: dramatiq.Broker, queue: str, replayed: int | None
) -> dict[str, Any]:
    list_s, rows = timed(lambda: store.find(Selector(), 50))
    filtered_s, _ = timed(lambda: store.find(Selector(queue=queue, error="KeyError"), 50))
    groups_s, groups = timed(store.groups)
    ids_s, ids = timed(lambda: store.ids(Selector(queue=queue)))
    ids = ids[:replayed] if replayed is not None else ids
    replay_s, result = timed(lambda: replay(ids, "bench", broker=broker, store=store))
    return {
        "list_s": list_s,
        "list_filtered_s": filtered_s,
        "groups_s": groups_s,
        "groups": len(groups),
        "select_ids_s": ids_s,
        "replay_s": replay_s,
        "replayed": len(result.replayed),
        "listed": len(rows),
    }
