"""The saga actor: load the saga, take the pure step, save at the version read, then send.

The messages a step produces are saved in the same update as the state; only then are they
sent, and then forgotten. A crash between the save and the send leaves them in the saga:
the message that caused the step is redelivered, is recognised as handled, and its step's
messages go out again. Their ids are deterministic, so their handlers take them once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq
import structlog

from messages import Command, Event, Message, encode
from messages.errors import ConcurrencyError, InvalidMessageError
from messages.fulfilment import StepDeadlinePassed
from messages.orders import OrderPlaced
from readstore.db import get_database
from sagas.fulfilment import HANDLES, saga_key, start, step
from sagas.store import SagaStore
from workers.publishing import envelope
from workers.runtime.broker import message_actor
from workers.runtime.settings import Settings
from workers.write import outbox
from workers.write.outbox import subscribe
from workers.write.writebehind import WRITE_BEHIND

log = structlog.get_logger("sagaworks.sagas")

ATTEMPTS = 10
_step_seconds: float | None = None


def configure(settings: Settings) -> None:
    """At boot: the step deadline, and whether placed orders start a saga at all."""
    global _step_seconds  # noqa: PLW0603 -- process-wide, set once at boot
    _step_seconds = settings.saga_step_deadline_seconds
    subscribed = [s for s in outbox.SUBSCRIBERS if s[0] is run_fulfilment_saga]
    if settings.fulfilment_saga and not subscribed:
        subscribe(run_fulfilment_saga, [t for t in HANDLES if issubclass(t, Event)])
    elif not settings.fulfilment_saga:
        for subscription in subscribed:
            outbox.SUBSCRIBERS.remove(subscription)


def step_seconds() -> float:
    return _step_seconds if _step_seconds is not None else Settings().saga_step_deadline_seconds


def run_saga(message: Message, store: SagaStore | None = None) -> str:
    """Apply ``message`` to its saga; what became of it (a status, or why nothing happened)."""
    store = store or SagaStore(get_database())
    saga_id = str(saga_key(message))
    if isinstance(message, OrderPlaced):
        # The common case is a new saga: try to create it before reading anything.
        state, out = start(message, step_seconds())
        if store.create(state, message, out):
            return _send_and_forget(store, saga_id, 1, out, state.status)
    for _ in range(ATTEMPTS):
        record = store.load(saga_id)
        if record is None:
            if not isinstance(message, OrderPlaced):
                return "no saga"
            state, out = start(message, step_seconds())
            if not store.create(state, message, out):
                continue
            return _send_and_forget(store, saga_id, 1, out, state.status)
        if str(message.message_id) in record.handled:
            return _send_and_forget(store, saga_id, record.version, record.pending, "duplicate")
        state, out = step(record.state, message)
        if state == record.state and not out:
            return "ignored"
        if store.save(record, state, message, out):
            return _send_and_forget(store, saga_id, record.version + 1, out, state.status)
    raise ConcurrencyError(f"saga {saga_id}: still conflicting after {ATTEMPTS} attempts")


def _send_and_forget(
    store: SagaStore,
    saga_id: str,
    version: int,
    out: tuple[Message, ...] | list[Message],
    outcome: str,
) -> str:
    if out:
        send_all(out)
        # Written behind: if a crash loses it, the saga's next step replaces ``pending``.
        WRITE_BEHIND.add(store.collection, store.sent(saga_id, version))
    return outcome


def send_all(messages: tuple[Message, ...] | list[Message]) -> None:
    for message in messages:
        send(message)


def send(message: Message) -> None:
    """A command to its context's queue; a deadline to the saga itself, delayed until due."""
    broker = dramatiq.get_broker()
    if isinstance(message, Command):
        broker.enqueue(envelope(message))
    elif isinstance(message, StepDeadlinePassed):
        delay = (message.due_at - datetime.now(UTC)).total_seconds()
        broker.enqueue(_to_saga(message), delay=max(int(delay * 1000), 0) or None)
    else:
        raise TypeError(f"a saga cannot send {message.type_name()}")


def _to_saga(message: Message) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=run_fulfilment_saga.queue_name,
        actor_name=run_fulfilment_saga.actor_name,
        args=(encode(message),),
        kwargs={},
        options={},
        message_id=str(message.message_id),
    )


@message_actor(queue_name="sagas.fulfilment", actor_name="run_fulfilment_saga")
def run_fulfilment_saga(message: Message) -> None:
    """The order-fulfilment saga: order, stock, payment and deadline messages."""
    if not isinstance(message, HANDLES):
        raise InvalidMessageError(f"{message.type_name()} is not a fulfilment saga message")
    outcome = run_saga(message)
    log.info("saga.stepped", order_id=str(saga_key(message)), outcome=outcome)
