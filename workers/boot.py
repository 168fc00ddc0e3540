"""Booting a process: logging, MongoDB, the broker, every actor bound and every index made."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import dramatiq
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database

from messages import registry
from readstore.db import Document, configure_database, get_database, set_database
from sagas.store import SagaStore
from workers.deadletters.parking import record_parked_commit
from workers.deadletters.store import DeadLetterStore
from workers.middleware import default_middleware
from workers.runtime.broker import Rabbitmq, bind
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.logs import configure_logging
from workers.runtime.settings import Settings
from workers.write import outbox, snapshots
from workers.write.eventstore import EventStore
from workers.write.writebehind import WRITE_BEHIND

log = structlog.get_logger("sagaworks.runtime")

#: Modules that declare actors; importing them registers the actors and their subscriptions.
ACTOR_MODULES = [
    "workers.contexts.customers",
    "workers.contexts.orders",
    "workers.contexts.inventory",
    "workers.contexts.payments",
    "workers.subscribers.fulfilment",
    "workers.subscribers.projections",
]


def load_actor_modules(settings: Settings | None = None) -> None:
    """Import every actor module; one with a ``configure(settings)`` is configured too."""
    for name in ACTOR_MODULES:
        module = importlib.import_module(name)
        if settings is not None and hasattr(module, "configure"):
            module.configure(settings)


def ensure_indexes(database: Database[Document] | None = None) -> None:
    from workers.subscribers.projections import PROJECTIONS  # noqa: PLC0415 -- after the actor modules

    EventStore(database).ensure_indexes()
    DeadLetterStore(database).indexes()
    for projection, _ in PROJECTIONS.values():
        projection(database).indexes()
    SagaStore(database if database is not None else get_database()).indexes()


def rabbitmq_broker(settings: Settings) -> RabbitmqBroker:
    """RabbitMQ at ``SAGAWORKS_AMQP_URL``, with publisher confirms (no silent loss)."""
    return Rabbitmq(
        url=settings.amqp(),
        confirm_delivery=True,
        middleware=default_middleware(settings),
        quorum=settings.quorum_queues,
        max_message_bytes=settings.max_message_bytes,
    )


def stub_broker(settings: Settings) -> StubBroker:
    """The in-process broker, for unit tests and the embedded demo."""
    broker = StubBroker(middleware=default_middleware(settings))
    broker.emit_after("process_boot")
    return broker


def make_broker(settings: Settings) -> dramatiq.Broker:
    return rabbitmq_broker(settings) if settings.amqp_url else stub_broker(settings)


@dataclass
class Runtime:
    settings: Settings
    broker: dramatiq.Broker
    embedded: EmbeddedMongo | None = field(default=None)

    def close(self) -> None:
        WRITE_BEHIND.flush()  # held marks, while the store is still there
        self.broker.close()
        if self.embedded is not None:
            self.embedded.stop()


def boot(
    settings: Settings | None = None,
    *,
    broker: dramatiq.Broker | None = None,
    database: Database[Document] | None = None,
    logging: bool = True,
    embedded_ok: bool = True,
) -> Runtime:
    """Make this process ready to send and handle messages."""
    settings = settings or Settings()
    if logging:
        configure_logging(settings.log_level, settings.log_format)
    load_actor_modules(settings)
    registry.check()  # refuse to start with a gap in an upcaster chain
    snapshots.configure(settings.snapshot_every)
    outbox.on_parked_commit(record_parked_commit)  # the relay's parked commits are dead letters
    embedded = None
    if database is not None:
        set_database(database)
    elif settings.mongodb():
        configure_database(settings.mongodb() or "", settings.mongodb_db, settings.write_concern())
    elif embedded_ok:
        embedded = EmbeddedMongo.start(
            settings.embedded_storage_path, sync_on_commit=settings.embedded_sync_on_commit
        )
        configure_database(embedded.url, settings.mongodb_db, settings.write_concern())
    else:
        raise RuntimeError("set SAGAWORKS_MONGODB_URL: this process must share its MongoDB")
    ensure_indexes(get_database())
    runtime = Runtime(
        settings, bind(broker or make_broker(settings), settings.queue_prefix), embedded
    )
    log.info("runtime.booted", **settings.describe())
    return runtime
