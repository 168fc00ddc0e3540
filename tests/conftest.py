"""Fixtures: a MongoDB per test (embedded SecantusDB unless SAGAWORKS_MONGODB_URL is set),
the stub broker and worker, and the real RabbitMQ broker and worker."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import dramatiq
import pika
import pytest
from dramatiq import Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database

from readstore.db import Document, set_database
from tests.private_rabbit import PrivateRabbit
from workers.boot import boot
from workers.boot import rabbitmq_broker as make_rabbitmq_broker
from workers.boot import stub_broker as make_stub_broker
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings

AMQP_URL = os.environ.get("SAGAWORKS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """A MongoDB shared by the session: the configured one, or an embedded SecantusDB."""
    configured = os.environ.get("SAGAWORKS_MONGODB_URL")
    if configured:
        yield configured
        return
    server = EmbeddedMongo.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongo_client(mongo_url: str) -> Iterator[MongoClient[Document]]:
    client: MongoClient[Document] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard"
    )
    yield client
    client.close()


@pytest.fixture
def database(mongo_client: MongoClient[Document]) -> Iterator[Database[Document]]:
    """A fresh database for this test alone, set as the process-wide database."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    db = mongo_client[name]
    set_database(db)
    yield db
    mongo_client.drop_database(name)


@pytest.fixture
def settings(mongo_url: str, database: Database[Document]) -> Settings:
    return Settings(
        amqp_url=AMQP_URL,
        mongodb_url=mongo_url,
        mongodb_db=database.name,
        min_backoff_ms=10,
        max_backoff_ms=200,
        max_retries=3,
        relay_grace_seconds=0.5,
        fulfilment_saga=False,  # tests of the saga turn it on
        queue_prefix=f"t{database.name[-8:]}.",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def stub_broker(settings: Settings, database: Database[Document]) -> Iterator[StubBroker]:
    broker = make_stub_broker(settings)
    boot(settings, broker=broker, database=database, logging=False)
    broker.flush_all()
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture
def stub_worker(stub_broker: StubBroker) -> Iterator[Worker]:
    worker = Worker(stub_broker, worker_timeout=50, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


def require_rabbitmq() -> None:
    """Fail the test in CI when RabbitMQ is missing; skip it elsewhere."""
    if not rabbitmq_available():
        message = f"RabbitMQ is not reachable at {AMQP_URL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def rabbitmq_available() -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError:
        return False
    return True


@pytest.fixture
def rabbitmq_broker(settings: Settings, database: Database[Document]) -> Iterator[RabbitmqBroker]:
    """The real RabbitMQ: a missing broker fails the test in CI and skips it elsewhere."""
    require_rabbitmq()
    broker = make_rabbitmq_broker(settings)
    boot(settings, broker=broker, database=database, logging=False)
    broker.flush_all()
    yield broker
    broker.close()
    delete_queues(settings.queue_prefix)
    dramatiq.set_broker(StubBroker())


def delete_queues(prefix: str) -> None:
    """Remove this test's queues (and their delay and dead-letter queues) from RabbitMQ."""
    from workers.boot import load_actor_modules
    from workers.runtime.broker import BASE_QUEUES

    load_actor_modules()  # every queue a process of this test may have declared

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    for base in set(BASE_QUEUES.values()):
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(prefix + base + suffix)
    channel.queue_delete(prefix + "sagaworks.replays")  # the replay journal
    channel.exchange_delete(prefix + "sagaworks.upstream")  # bound to the command queues
    channel.exchange_delete(prefix + "sagaworks.events")  # the events exchange of the prefix
    connection.close()


@pytest.fixture
def rabbitmq_worker(rabbitmq_broker: RabbitmqBroker) -> Iterator[Worker]:
    worker = Worker(rabbitmq_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "rabbitmq_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.rabbitmq)


@pytest.fixture(scope="module")
def private_rabbit() -> Iterator[PrivateRabbit]:
    """A RabbitMQ node of this test module's own, which its tests may stop and restart."""
    require_private_rabbit()
    with PrivateRabbit.started() as node:
        yield node


def require_private_rabbit() -> None:
    """Fail the test in CI when no private RabbitMQ node can be started here (not root nor
    the ``rabbitmq`` user, or no rabbitmq-server); skip it elsewhere."""
    reason = PrivateRabbit.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def private_settings(settings: Settings, private_rabbit: PrivateRabbit) -> Settings:
    """The test's settings, on the private node."""
    return settings.model_copy(update={"amqp_url": SecretStr(private_rabbit.url)})
