"""Fuzz: mutated envelopes sent to a real worker on the real RabbitMQ.

Afterwards every delivery is either processed or in the dead-letter store with a reason, no
worker or consumer thread died (``Thread.is_alive`` on the in-process worker's threads), a
valid order still goes through, and ``status`` flags nothing but the dead letters.

The suite runs a fixed seed and a bounded count; a longer run is the same test with
``FUZZ_COUNT`` (and ``FUZZ_SEED``) set, e.g. ``FUZZ_COUNT=3000 pytest -s <this file>``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.middleware import Middleware
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pymongo.database import Database

from readstore.db import Document
from readstore.orders import get_order
from tests.fuzzing import hostile_deliveries
from tests.hostile import publish_many, queue_depth, threads_alive, wait_for
from tests.support import place_order, register_customer, settle
from workers.ops.status import status
from workers.publishing import publish
from workers.runtime.settings import Settings

COUNT = int(os.environ.get("FUZZ_COUNT", "120"))
SEED = int(os.environ.get("FUZZ_SEED", "20261125"))
BATCH = 40
MAX_BYTES = 32 * 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small bodies (so oversize is cheap to try) and a quick ``.XQ`` ingester."""
    return settings.model_copy(
        update={
            "max_message_bytes": MAX_BYTES,
            "dead_letter_ingest_seconds": 0.5,
            "dead_letter_grace_seconds": 0.5,
        }
    )


class Processed(Middleware):
    """Envelope ids whose actor ran to completion."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None and not message.failed:
            self.ids.add(message.message_id)


def generate(prefix: str) -> list[tuple[str, bytes]]:
    """``COUNT`` hostile deliveries, reproducibly from ``SEED``."""
    drawn: list[tuple[str, bytes]] = []

    @seed(SEED)
    @hypothesis_settings(
        max_examples=max(COUNT // BATCH, 1),
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        deliveries=st.lists(hostile_deliveries(prefix, MAX_BYTES), min_size=BATCH, max_size=BATCH)
    )
    def draw(deliveries: list[tuple[str, bytes]]) -> None:
        drawn.extend(deliveries)

    draw()
    return drawn[:COUNT]


def dead_letter_note(note: str) -> bool:
    return "dead letter(s) in the store" in note or "not ingested yet" in note


def outcome(
    broker: Any, processed: set[str], reasons: dict[str, str], queue: str, body: bytes
) -> str | None:
    """``processed``, ``dead`` (in the dead-letter store with a reason), or ``None``."""
    rejection = broker.screen(queue, "", body)
    if rejection is not None:
        key = rejection.key
    else:
        key = json.loads(body)["message_id"]
        if key in processed:
            return "processed"
    return "dead" if reasons.get(key) else None


@pytest.mark.timeout(max(300, COUNT // 4))
def test_fuzzed_envelopes_are_processed_or_dead_lettered_and_the_worker_survives(
    rabbitmq_broker: Any, settings: Settings, database: Database[Document]
) -> None:
    # Given a worker with 4 threads, and a tally of what its actors completed
    processed = Processed()
    rabbitmq_broker.add_middleware(processed)
    worker = Worker(rabbitmq_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    alive_before = threads_alive(worker)
    deliveries = generate(settings.queue_prefix)
    started = time.monotonic()
    try:
        # When the fuzzed deliveries are published to the command queues
        for queue in {q for q, _ in deliveries}:
            publish_many(queue, [b for q, b in deliveries if q == queue])
        during = status(settings, database)
        settle(rabbitmq_broker, worker, timeout=300)
        # And a valid customer then places a valid order
        customer = register_customer()
        publish(customer).wait(30)
        order = place_order(customer.customer_id)
        publish(order)
        wait_for(lambda: get_order(order.order_id, timeout=0).value is not None, timeout=60)
        alive_after = threads_alive(worker)
        queues = sorted({q for q, _ in deliveries})
        wait_for(lambda: all(queue_depth(q + ".XQ") == 0 for q in queues), timeout=60)
        health = status(settings, database)
    finally:
        worker.stop()
    # Then every delivery is accounted for, and no thread died
    reasons = {d["_id"]: d.get("reason") for d in database["dead_letters"].find({}, {"reason": 1})}
    outcomes = [(b, outcome(rabbitmq_broker, processed.ids, reasons, q, b)) for q, b in deliveries]
    missing = [b[:120] for b, fate in outcomes if fate is None]
    fates = Counter(fate for _, fate in outcomes)
    print(
        f"\nfuzz: seed={SEED} tried={len(deliveries)} processed={fates['processed']} "
        f"dead_lettered={fates['dead']} unaccounted={len(missing)} "
        f"dead_letter_entries={database['dead_letters'].count_documents({})} "
        f"(worker, consumer) threads alive={alive_after} of {alive_before} "
        f"seconds={time.monotonic() - started:.1f}"
    )
    assert missing == []
    assert alive_after == alive_before
    # And status flags nothing but the dead letters it counts (in flight: not yet ingested)
    assert [n for n in during.attention if not dead_letter_note(n)] == []
    assert [n for n in health.attention if "dead letter(s) in the store" not in n] == []
