"""``sagaworks dlq bench``: seed N dead letters, time list, groups and a replay of them all."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pymongo.database import Database

from readstore.db import Document, connect
from workers.deadletters.record import Failure
from workers.deadletters.replay import replay
from workers.deadletters.store import DeadLetterStore, Selector
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings

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


def run(count: int = 10_000, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings()
    if not settings.amqp():
        raise RuntimeError("set SAGAWORKS_AMQP_URL: the replay goes to RabbitMQ")
    queue = f"dlqbench{uuid.uuid4().hex[:8]}.orders.commands"
    broker = RabbitmqBroker(url=settings.amqp(), confirm_delivery=True, middleware=[])
    with bench_database(settings) as database:
        store = DeadLetterStore(database)
        store.indexes()
        seed, _ = timed(lambda: store.record_many(failures(count, queue), copy_in_xq=False))
        report = measure(store, broker, queue, count)
        report["seed_s"] = seed
        report["store"] = "configured MongoDB" if settings.mongodb() else "embedded SecantusDB"
    for suffix in ("", ".DQ", ".XQ"):
        broker.channel.queue_delete(queue + suffix)
    broker.close()
    return report


def measure(
    store: DeadLetterStore, broker: dramatiq.Broker, queue: str, count: int
) -> dict[str, Any]:
    list_s, rows = timed(lambda: store.find(Selector(), 50))
    filtered_s, _ = timed(lambda: store.find(Selector(queue=queue, error="KeyError"), 50))
    groups_s, groups = timed(store.groups)
    ids_s, ids = timed(lambda: store.ids(Selector(queue=queue)))
    replay_s, result = timed(lambda: replay(ids, "bench", broker=broker, store=store))
    return {
        "dead_letters": count,
        "list_s": list_s,
        "list_filtered_s": filtered_s,
        "groups_s": groups_s,
        "groups": len(groups),
        "select_ids_s": ids_s,
        "replay_s": replay_s,
        "replayed": len(result.replayed),
        "listed": len(rows),
    }
