"""``publish()`` during a broker outage: it waits the outage out, up to its limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from tests.private_rabbit import PrivateRabbit
from tests.support import register_customer
from workers.boot import boot, rabbitmq_broker
from workers.publishing import BrokerUnavailable, Receipt, publish
from workers.runtime.broker import queue_name
from workers.runtime.settings import Settings

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def private_broker(private_settings: Settings, database: Any) -> Iterator[dramatiq.Broker]:
    broker = rabbitmq_broker(private_settings)
    boot(private_settings, broker=broker, database=database, logging=False)
    yield broker
    broker.close()
    dramatiq.set_broker(StubBroker())


def test_publish_during_a_ten_second_outage_succeeds_once_the_broker_is_back(
    private_rabbit: PrivateRabbit, private_broker: dramatiq.Broker
) -> None:
    # Given a publisher whose broker goes away for 10 s
    command = register_customer()
    publish(register_customer())  # the queues exist; the connection is warm
    private_rabbit.stop_app()
    outcome: list[Receipt | BaseException] = []

    def publisher() -> None:
        try:
            outcome.append(publish(command, timeout=60))
        except BaseException as exc:  # reported by the assertion below
            outcome.append(exc)

    # When it publishes during the outage
    started = time.monotonic()
    thread = threading.Thread(target=publisher)
    thread.start()
    time.sleep(10)
    assert thread.is_alive(), f"publish() returned during the outage: {outcome}"
    private_rabbit.start_app()
    thread.join(60)

    # Then the call returned once the broker was back, and the message is on its queue
    assert isinstance(outcome[0], Receipt), outcome
    assert outcome[0].message_id == str(command.message_id)
    assert time.monotonic() - started >= 10
    del private_broker.connection  # this thread's connection died with the broker
    ready = private_broker.get_queue_message_counts(queue_name("customers.commands"))  # type: ignore[attr-defined]
    assert ready[0] == 2


def test_publish_past_its_limit_raises_broker_unavailable(
    private_rabbit: PrivateRabbit, private_broker: dramatiq.Broker
) -> None:
    # Given a broker that is down
    private_rabbit.stop_app()
    try:
        # When a command is published with a 3 s limit
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="was not published"):
            publish(register_customer(), timeout=3)
        waited = time.monotonic() - started
    finally:
        private_rabbit.start_app()

    # Then it gave up after about its limit, not at once and not much later
    assert 1.5 <= waited <= 8
