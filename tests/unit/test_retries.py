"""A retry that cannot be re-enqueued is dead-lettered, never acked away."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Worker

from workers.boot import stub_broker


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


def test_a_command_survives_mongodb_going_away_mid_way(stub_broker, stub_worker, monkeypatch):
    # Given MongoDB drops the connection on the first two appends
    from pymongo.errors import AutoReconnect

    from readstore.customers import get_customer_profile
    from tests.support import register_customer, settle
    from workers.publishing import publish
    from workers.write.eventstore import EventStore

    real_append = EventStore.append
    failures = iter([AutoReconnect("connection reset"), AutoReconnect("connection reset")])

    def append(self: EventStore, *args: Any, **kwargs: Any) -> Any:
        error = next(failures, None)
        if error is not None:
            raise error
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(EventStore, "append", append)

    # When a command arrives meanwhile
    customer = register_customer()
    receipt = publish(customer)
    settle(stub_broker, stub_worker)

    # Then it was retried until it committed, once, and reached the read model
    token = receipt.wait(5)
    assert token is not None
    assert token.version == 1
    assert get_customer_profile(customer.customer_id, token).value is not None
    assert stub_broker.dead_letters == []
