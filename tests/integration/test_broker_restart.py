"""A broker restart while messages are being retried: no false dead letter, nothing doubled."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from messages.errors import TransientError
from readstore.customers import CustomerProfiles, get_customer_profile
from readstore.projection import parked_streams
from tests.private_rabbit import PrivateRabbit
from tests.support import register_customer, settle
from workers.boot import boot, rabbitmq_broker
from workers.deadletters.store import DEAD, DeadLetterStore
from workers.publishing import publish
from workers.runtime.broker import ACTORS
from workers.runtime.settings import Settings

pytestmark = pytest.mark.rabbitmq


class FailDuringOutage:
    """Around an actor: the first call for a target customer waits until the broker is
    down, then fails transiently, so its retry cannot be enqueued nor its nack sent."""

    def __init__(self) -> None:
        self.targets: dict[str, str] = {}  # customer id -> actor name
        self.blocked: dict[str, threading.Event] = {}
        self.outage = threading.Event()
        self.successes: dict[str, int] = {}

    def wrap(self, actor: dramatiq.Actor[Any, Any]) -> Callable[[], None]:
        original = actor.fn

        @functools.wraps(original)
        def call(payload: dict[str, Any]) -> None:
            key = f"{actor.actor_name}:{payload['data'].get('customer_id')}"
            blocked = self.blocked.get(key)
            if blocked is not None and not blocked.is_set():
                blocked.set()
                self.outage.wait(60)
                raise TransientError("a dependency failed while the broker was down")
            original(payload)
            if blocked is not None:
                self.successes[key] = self.successes.get(key, 0) + 1

        actor.fn = call
        return lambda: setattr(actor, "fn", original)

    def target(self, actor_name: str, customer_id: uuid.UUID) -> threading.Event:
        key = f"{actor_name}:{customer_id}"
        self.blocked[key] = threading.Event()
        return self.blocked[key]


@pytest.fixture
def private_worker(
    private_settings: Settings, database: Any
) -> Iterator[tuple[dramatiq.Broker, Worker]]:
    broker = rabbitmq_broker(private_settings)
    boot(private_settings, broker=broker, database=database, logging=False)
    worker = Worker(broker, worker_timeout=100, worker_threads=4)
    yield broker, worker
    worker.stop()
    broker.close()
    dramatiq.set_broker(StubBroker())


def wait(event: threading.Event, what: str, timeout: float = 30.0) -> None:
    if not event.wait(timeout):
        raise TimeoutError(f"{what} never happened")


def test_broker_restart_while_a_command_and_a_projection_event_are_retried_leaves_no_dead_letter(
    private_rabbit: PrivateRabbit,
    private_worker: tuple[dramatiq.Broker, Worker],
    database: Any,
) -> None:
    # Given a command and a projection event, each failing once while the broker goes down
    broker, worker = private_worker
    faults = FailDuringOutage()
    actors = {a.actor_name: a for a in ACTORS}
    undo = [faults.wrap(actors[n]) for n in ("handle_customer_command", "project_customer_profile")]
    known, fresh = register_customer("Known"), register_customer("Fresh")
    event_blocked = faults.target("project_customer_profile", known.customer_id)
    command_blocked = faults.target("handle_customer_command", fresh.customer_id)
    worker.start()
    try:
        publish(known)
        wait(event_blocked, "the projection of the first customer's event")
        publish(fresh)
        wait(command_blocked, "the second customer's command")

        # When the broker stops while both fail, stays down past Dramatiq's nack retry,
        # and comes back
        private_rabbit.stop_app()
        time.sleep(1.0)
        faults.outage.set()
        time.sleep(7.0)
        private_rabbit.start_app()
        deadline = time.monotonic() + 60
        while get_customer_profile(fresh.customer_id).value is None or (
            get_customer_profile(known.customer_id).value is None
        ):
            assert time.monotonic() < deadline, "the messages were not redelivered"
            time.sleep(0.2)
        del broker.connection  # this thread's connection died with the broker
        settle(broker, worker)
    finally:
        for restore in undo:
            restore()

    # Then no dead letter, no parked stream, and each was applied once
    store = DeadLetterStore(database)
    dead = [d["_id"] for d in store.entries.find({"state": DEAD})]
    assert dead == []
    assert parked_streams(database, CustomerProfiles.collection_name) == []
    commits = database["commits"]
    for customer in (known, fresh):
        assert commits.count_documents({"stream_id": f"customer-{customer.customer_id}"}) == 1
    assert faults.successes == {
        f"handle_customer_command:{fresh.customer_id}": 1,
        f"project_customer_profile:{known.customer_id}": 1,
    }
