"""A retry that cannot be re-enqueued is dead-lettered, never acked away."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Worker

from workers.broker import stub_broker


def test_a_retry_that_cannot_be_enqueued_goes_to_the_dead_letters(settings):
    # Given a broker that cannot enqueue retries, and an actor that fails once
    broker = stub_broker(settings)
    real_enqueue = broker.enqueue

    def enqueue(message: Any, *, delay: int | None = None) -> Any:
        if message.options.get("retries"):
            raise ConnectionError("broker hiccup")
        return real_enqueue(message, delay=delay)

    broker.enqueue = enqueue  # type: ignore[method-assign]
    calls: list[int] = []

    @dramatiq.actor(broker=broker, queue_name="flaky", max_retries=3)
    def flaky() -> None:
        calls.append(1)
        raise RuntimeError("transient")

    worker = Worker(broker, worker_timeout=50)
    worker.start()
    try:
        # When it fails and its retry cannot be enqueued
        flaky.send()
        broker.join("flaky", fail_fast=False)
        worker.join()
    finally:
        worker.stop()

    # Then the message was not acked away: it is in the dead letters
    assert calls == [1]
    assert len(broker.dead_letters) == 1
