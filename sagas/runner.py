"""Running one message through its saga: load, step, save at the version read, then send.

The messages a step produces are appended to the saga's pending list in the same update as
the state; only then are they sent, and then removed from the list one by one. A crash or a
failed send between the save and the removal leaves them pending: the message that caused
the step is redelivered, recognised as handled, and every message still pending goes out
again. Their ids are deterministic, so their handlers take each once.

The store and the way out (``send``, ``forget``) are given by the caller: the actor passes
MongoDB and the broker, the exploration test an in-memory store and its own queues.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from messages import Message
from messages.errors import ConcurrencyError, TransientError
from messages.orders import OrderPlaced
from sagas.fulfilment import saga_key, start, step
from sagas.state import Fulfilment


class SagaNotStarted(TransientError):
    """A message for an order whose saga does not exist yet (its ``OrderPlaced`` is on its
    way): retried until it does, never dropped."""


class Record(Protocol):
    @property
    def version(self) -> int: ...
    @property
    def state(self) -> Fulfilment: ...
    @property
    def handled(self) -> frozenset[str]: ...
    @property
    def pending(self) -> tuple[Message, ...]: ...


class Store(Protocol):
    def load(self, saga_id: str) -> Record | None: ...
    def create(self, state: Fulfilment, cause: Message, out: Sequence[Message]) -> bool: ...
    def save(
        self, record: Any, state: Fulfilment, cause: Message, out: Sequence[Message]
    ) -> bool: ...


Send = Callable[[Message], None]
Forget = Callable[[str, list[str]], None]


class Runner:
    """One saga store and one way out; ``run`` applies a message to its saga."""

    def __init__(
        self, store: Store, send: Send, forget: Forget, step_seconds: float, attempts: int
    ) -> None:
        self.store = store
        self.send = send
        self.forget = forget
        self.step_seconds = step_seconds
        self.attempts = attempts

    def run(self, message: Message, now: datetime) -> str:
        """What became of ``message``: the saga's new status, or why nothing changed."""
        saga_id = str(saga_key(message))
        if isinstance(message, OrderPlaced):
            # The common case is a new saga: try to create it before reading anything.
            outcome = self._create(saga_id, message, now)
            if outcome is not None:
                return outcome
        for _ in range(self.attempts):
            outcome = self._try(saga_id, message, now)
            if outcome is not None:
                return outcome
        raise ConcurrencyError(f"saga {saga_id}: still conflicting after {self.attempts}")

    def _create(self, saga_id: str, event: OrderPlaced, now: datetime) -> str | None:
        state, out = start(event, self.step_seconds, now)
        if not self.store.create(state, event, out):
            return None
        return self._deliver(saga_id, out, state.status.value)

    def _try(self, saga_id: str, message: Message, now: datetime) -> str | None:
        """One attempt; ``None`` when another writer came first."""
        record = self.store.load(saga_id)
        if record is None:
            if isinstance(message, OrderPlaced):
                return self._create(saga_id, message, now)
            raise SagaNotStarted(f"{message.type_name()} before the saga of {saga_id} started")
        if str(message.message_id) in record.handled:
            return self._deliver(saga_id, record.pending, "duplicate")
        state, out = step(record.state, message, now)
        if state == record.state and not out:
            return "ignored"
        if not self.store.save(record, state, message, out):
            return None
        return self._deliver(saga_id, out, state.status.value)

    def _deliver(self, saga_id: str, out: Sequence[Message], outcome: str) -> str:
        for message in out:
            self.send(message)
        if out:
            self.forget(saga_id, [str(m.message_id) for m in out])
        return outcome
