"""The service in-process for a user's tests: the stub broker, a store, and what was sent.

with TestService() as service:
    service.send(RegisterCustomer(...))
    service.send(PlaceOrder(...))
    assert service.sent(OrderPlaced)
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Self, TypeVar

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware
from pymongo.database import Database

from messages import Event, Message, decode
from messages.registry import InvalidMessage
from readstore.db import Document, get_database
from workers.boot import Runtime, boot, stub_broker
from workers.publishing import publish
from workers.runtime.settings import Settings
from workers.testing.settle import settle
from workers.write.eventstore import EventStore

M = TypeVar("M", bound=Message)


class Recorder(Middleware):
    """Keeps every domain message enqueued on the broker, in order, decoded."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if len(message.args) != 1:
            return
        try:
            decoded = decode(message.args[0])
        except InvalidMessage:
            return
        with self._lock:
            self.messages.append(decoded)


class TestService:
    """Boot the whole service on the stub broker; send, settle, and look at what happened."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, settings: Settings | None = None, database: Database[Document] | None = None
    ) -> None:
        self.settings = settings or Settings(_env_file=None)
        self.database = database
        self.recorder = Recorder()
        self.runtime: Runtime | None = None
        self.worker: Worker | None = None

    def __enter__(self) -> Self:
        broker = stub_broker(self.settings)
        broker.add_middleware(self.recorder)
        self.runtime = boot(self.settings, broker=broker, database=self.database, logging=False)
        self.worker = Worker(broker, worker_timeout=50, worker_threads=2)
        self.worker.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.runtime is not None:
            self.runtime.close()

    @property
    def broker(self) -> StubBroker:
        assert self.runtime is not None, "use TestService as a context manager"
        broker = self.runtime.broker
        assert isinstance(broker, StubBroker)
        return broker

    def send(self, message: Message, *, wait: bool = True) -> None:
        """Publish ``message`` as an upstream service would; by default wait for the cascade."""
        publish(message)
        if wait:
            self.settle()

    def settle(self, timeout: float = 30.0) -> None:
        assert self.worker is not None, "use TestService as a context manager"
        settle(self.broker, self.worker, timeout)

    def sent(self, kind: type[M] = Message) -> list[M]:  # type: ignore[assignment]  # default: all
        """Every message of ``kind`` sent so far (commands, events, saga steps), once each
        however many subscribers it went to, in the order first sent."""
        first = {m.message_id: m for m in reversed(self.recorder.messages)}
        in_order = sorted(first.values(), key=self.recorder.messages.index)
        return [m for m in in_order if isinstance(m, kind)]

    def events(self, stream_id: str) -> list[Event]:
        """The events stored on ``stream_id``, in order."""
        commits = EventStore(get_database()).load(stream_id)
        return [event for commit in commits for event in commit.events]

    def dead_letters(self) -> list[Any]:
        """What the stub broker dead-lettered (Dramatiq's messages, with their options)."""
        return list(self.broker.dead_letters)
