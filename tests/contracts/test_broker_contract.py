"""What the framework needs from a broker, written once and run on the stub and on RabbitMQ."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pika
import pytest
from dramatiq import Worker
from pymongo.database import Database

from messages.errors import PermanentError, TransientError
from readstore.db import Document
from tests.conftest import AMQP_URL
from tests.support import register_customer, settle
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.publishing import publish
from workers.runtime.broker import queue_name
from workers.write.eventstore import EventStore


@dataclass
class Calls:
    """What the contract actors saw, by message id."""

    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str) -> int:
        with self.lock:
            self.seen[key] = self.seen.get(key, 0) + 1
            return self.seen[key]


@dataclass
class Contract:
    broker: dramatiq.Broker
    worker: Worker
    calls: Calls
    actors: dict[str, dramatiq.Actor[Any, Any]]


def declare(broker: dramatiq.Broker, calls: Calls) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Three actors on a queue of this test's own: one succeeds, one fails for good, one
    fails once then succeeds."""
    queue = queue_name(f"contract.{uuid.uuid4().hex[:8]}")

    def ok(key: str) -> None:
        calls.count(key)

    def poison(key: str) -> None:
        calls.count(key)
        raise PermanentError("retrying cannot help")

    def flaky(key: str) -> None:
        if calls.count(key) == 1:
            raise TransientError("first delivery fails")

    options = {"queue_name": queue, "broker": broker, "throws": (PermanentError,)}
    return {
        fn.__name__: dramatiq.actor(actor_name=f"contract_{fn.__name__}_{queue}", **options)(fn)
        for fn in (ok, poison, flaky)
    }


@pytest.fixture(params=["stub", "rabbitmq"])
def contract(request: pytest.FixtureRequest) -> Iterator[Contract]:
    broker: dramatiq.Broker = request.getfixturevalue(f"{request.param}_broker")
    calls = Calls()
    actors = declare(broker, calls)
    worker = Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield Contract(broker, worker, calls, actors)
    worker.stop()
    if request.param == "rabbitmq":
        drop_queue(next(iter(actors.values())).queue_name)


def drop_queue(name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    for suffix in ("", ".DQ", ".XQ"):
        channel.queue_delete(name + suffix)
    connection.close()


def test_a_message_is_processed_once(contract: Contract) -> None:
    # When one message is sent
    contract.actors["ok"].send("one")
    settle(contract.broker, contract.worker)
    # Then its actor ran exactly once
    assert contract.calls.seen == {"one": 1}


def test_a_permanent_error_is_dead_lettered_on_its_first_delivery(
    contract: Contract, database: Database[Document]
) -> None:
    # When an actor raises a permanent error
    contract.actors["poison"].send("bad")
    settle(contract.broker, contract.worker)
    # Then it ran once, and the dead-letter store has it with one attempt
    assert contract.calls.seen == {"bad": 1}
    actor = contract.actors["poison"].actor_name
    [entry] = DeadLetterStore(database).find(Selector(actor=actor))
    assert entry["attempts"] == 1
    assert entry["error_type"] == "PermanentError"


def test_a_transient_error_is_retried_until_it_succeeds(
    contract: Contract, database: Database[Document]
) -> None:
    # When an actor fails once, transiently
    contract.actors["flaky"].send("later")
    settle(contract.broker, contract.worker)
    # Then it ran again and nothing was dead-lettered
    assert contract.calls.seen == {"later": 2}
    assert DeadLetterStore(database).find(Selector(actor=contract.actors["flaky"].actor_name)) == []


def test_a_published_command_commits_once(contract: Contract, database: Database[Document]) -> None:
    # When a command is published twice with the same id (a publisher's retry)
    command = register_customer("Grace")
    publish(command)
    publish(command)
    settle(contract.broker, contract.worker)
    # Then one commit holds it
    assert len(EventStore(database).load(command.stream_id())) == 1
