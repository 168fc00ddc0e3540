"""The saga actor: run each message through its saga (``sagas.runner``) on MongoDB and the broker.

A saga's next step in this process starts from the record it saved last (``sagas.cache``).
The messages a step produces are saved with the state, then sent, then forgotten (written
behind, and held a moment so that the marks of a saga's next steps join them: a saga whose
steps follow closely forgets what it sent in one write; a lost "forget" only means they are
sent again, and their handlers take them once). Step deadlines are not messages held in
RabbitMQ: they are the saga's indexed ``wake_at``, and the deadline sweeper
(``workers.subscribers.deadlines``) sends the saga its ``StepDeadlinePassed`` when one has
come.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import structlog

from messages import Command, Event, Message, encode
from messages.errors import InvalidMessageError
from readstore.db import get_database
from sagas.cache import RecordCache
from sagas.fulfilment import HANDLES, saga_key
from sagas.runner import Runner
from sagas.store import SagaStore
from workers.publishing import envelope
from workers.runtime.broker import message_actor
from workers.runtime.settings import Settings
from workers.subscribers import deadlines
from workers.write import outbox
from workers.write.outbox import subscribe
from workers.write.writebehind import WRITE_BEHIND

log = structlog.get_logger("sagaworks.sagas")

_settings: Settings | None = None
#: The sagas this process saved last: a saga's next step starts from its copy (``sagas.cache``).
CACHE = RecordCache()
#: The longest a saga's "sent" marks wait for the marks of its next step (``mark_hold``).
MARK_HOLD_SECONDS = 5.0


def configure(settings: Settings) -> None:
    """At boot: deadlines, attempts, and whether placed orders start a saga at all."""
    global _settings  # noqa: PLW0603 -- process-wide, set once at boot
    _settings = settings
    subscribed = [s for s in outbox.SUBSCRIBERS if s[0] is run_fulfilment_saga]
    if settings.fulfilment_saga and not subscribed:
        subscribe(run_fulfilment_saga, [t for t in HANDLES if issubclass(t, Event)])
    elif not settings.fulfilment_saga:
        for subscription in subscribed:
            outbox.SUBSCRIBERS.remove(subscription)
    deadlines.configure(settings, to_saga, send)


def to_saga(message: Message) -> None:
    """Enqueue ``message`` for the saga actor, under its own id."""
    wrapped: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=run_fulfilment_saga.queue_name,
        actor_name=run_fulfilment_saga.actor_name,
        args=(encode(message),),
        kwargs={},
        options={},
        message_id=str(message.message_id),
    )
    run_fulfilment_saga.broker.enqueue(wrapped)


def settings() -> Settings:
    return _settings if _settings is not None else Settings()


def step_seconds() -> float:
    return settings().saga_step_deadline_seconds


def mark_hold() -> float:
    """How long a saga's "sent" marks wait for its next step's: well inside the step deadline
    (the sweeper re-sends what is still pending then, and a finished saga's after one)."""
    return min(MARK_HOLD_SECONDS, step_seconds() / 8)


def run_saga(message: Message, store: SagaStore | None = None) -> str:
    """Apply ``message`` to its saga; what became of it (a status, or why nothing happened)."""
    store = store or SagaStore(get_database(), resend_after=timedelta(seconds=step_seconds()))

    def forget(saga_id: str, message_ids: list[str]) -> None:
        WRITE_BEHIND.mark_sent(store.collection, saga_id, message_ids, store.sent, mark_hold())

    database = store.collection.database
    scope = (id(database.client), database.name, store.collection.name)
    attempts = settings().concurrency_attempts
    runner = Runner(store, send, forget, step_seconds(), attempts, cache=CACHE, scope=scope)
    return runner.run(message, datetime.now(UTC))


def send(message: Message) -> None:
    """A command to its context's queue: the only thing a saga step sends."""
    if not isinstance(message, Command):
        raise InvalidMessageError(f"a saga cannot send {message.type_name()}")
    dramatiq.get_broker().enqueue(envelope(message))


@message_actor(queue_name="sagas.fulfilment", actor_name="run_fulfilment_saga")
def run_fulfilment_saga(message: Message) -> None:
    """The order-fulfilment saga: order, stock, payment and deadline messages."""
    if not isinstance(message, HANDLES):
        raise InvalidMessageError(f"{message.type_name()} is not a fulfilment saga message")
    outcome = run_saga(message)
    order_id = str(saga_key(message))
    if outcome == "ignored":
        # Nothing to do in this state (a late reply, a stale deadline): said, not dropped.
        log.info("saga.ignored", order_id=order_id, message_type=message.type_name())
        return
    log.info("saga.stepped", order_id=order_id, outcome=outcome)
