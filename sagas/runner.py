"""Running one message through its saga: load (or reuse), step, save at the version read, send.

The messages a step produces are appended to the saga's pending list in the same update as
the state; only then are they sent, and then removed from the list one by one. A crash or a
failed send between the save and the removal leaves them pending: the message that caused
the step is redelivered, recognised as handled, and every message still pending goes out
again. Their ids are deterministic, so their handlers take each once.

The store and the way out (``send``, ``forget``) are given by the caller: the actor passes
MongoDB and the broker, the exploration test an in-memory store and its own queues.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import Any, Protocol

from messages import Message
from messages.errors import ConcurrencyError, TransientError
from messages.orders import OrderPlaced
from sagas.cache import RecordCache
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
    def create(self, state: Fulfilment, cause: Message, out: Sequence[Message]) -> Record | None:
        """The new saga as stored; ``None`` if it exists already."""
        ...

    def save(
        self, record: Any, state: Fulfilment, cause: Message, out: Sequence[Message]
    ) -> Record | None:
        """The saga as stored after the step; ``None`` if another write came first."""
        ...


Send = Callable[[Message], None]
Forget = Callable[[str, list[str]], None]


class Runner:
    """One saga store and one way out; ``run`` applies a message to its saga.

    With a ``cache`` (``sagas.cache``, under ``scope``: the store's identity), a step starts
    from the record this process saved last, when it has one, instead of reading it.
    """

    def __init__(
        self,
        store: Store,
        send: Send,
        forget: Forget,
        step_seconds: float,
        attempts: int,
        *,
        cache: RecordCache | None = None,
        scope: Hashable = (),
    ) -> None:
        self.store = store
        self.send = send
        self.forget = forget
        self.step_seconds = step_seconds
        self.attempts = attempts
        self.cache = cache
        self.scope = scope

    def run(self, message: Message, now: datetime) -> str:
        """What became of ``message``: the saga's new status, or why nothing changed."""
        saga_id = str(saga_key(message))
        if isinstance(message, OrderPlaced):
            # The common case is a new saga: try to create it before reading anything.
            outcome = self._create(saga_id, message, now)
            if outcome is not None:
                return outcome
        cached = self._cached(saga_id)
        tries = 0
        while tries < self.attempts:
            outcome = self._try(saga_id, message, now, cached)
            if outcome is not None:
                return outcome
            tries += 1 if cached is None else 0  # a stale cached copy costs no attempt
            cached = None
        raise ConcurrencyError(f"saga {saga_id}: still conflicting after {self.attempts}")

    def _create(self, saga_id: str, event: OrderPlaced, now: datetime) -> str | None:
        state, out = start(event, self.step_seconds, now)
        created = self.store.create(state, event, out)
        if created is None:
            return None
        self._remember(saga_id, created)
        return self._deliver(saga_id, out, state.status.value)

    def _try(
        self, saga_id: str, message: Message, now: datetime, cached: Record | None
    ) -> str | None:
        """One attempt, on ``cached`` or else a fresh read; ``None``: try again on a fresh read."""
        record = cached or self.store.load(saga_id)
        if record is None:
            if isinstance(message, OrderPlaced):
                return self._create(saga_id, message, now)
            raise SagaNotStarted(f"{message.type_name()} before the saga of {saga_id} started")
        if str(message.message_id) in record.handled:
            return None if cached else self._deliver(saga_id, record.pending, "duplicate")
        state, out = step(record.state, message, now)
        if state == record.state and not out:
            return None if cached else "ignored"
        saved = self.store.save(record, state, message, out)
        self._remember(saga_id, saved)
        if saved is None:
            return None
        return self._deliver(saga_id, out, state.status.value)

    def _cached(self, saga_id: str) -> Record | None:
        record: Record | None = self.cache.get((self.scope, saga_id)) if self.cache else None
        return record

    def _remember(self, saga_id: str, record: Record | None) -> None:
        if self.cache is None:
            return
        if record is None:
            self.cache.forget((self.scope, saga_id))
        else:
            self.cache.put((self.scope, saga_id), record)

    def _deliver(self, saga_id: str, out: Sequence[Message], outcome: str) -> str:
        for message in out:
            self.send(message)
        if out:
            self.forget(saga_id, [str(m.message_id) for m in out])
        return outcome
