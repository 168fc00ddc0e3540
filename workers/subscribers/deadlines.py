"""The saga deadline sweeper: sends ``StepDeadlinePassed`` to each saga whose step deadline came.

A saga's deadline is a field of its document (``wake_at``, indexed), set when it enters a
step. One pass reads the sagas whose ``wake_at`` has come (one indexed query, usually
empty), enqueues each its deadline message (deterministic id: the step and the deadline),
and moves its ``wake_at`` one step further, in one bulk write, so a lost message is sent
again later. It runs in every worker process (``workers.runtime.periodic``); passes that
race send the same message twice, which the saga takes once. Nothing is held unacknowledged
in RabbitMQ, so deadlines may be longer than its consumer timeout, and a deadline that fell
due while every worker was down fires on the first pass after they are back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import structlog

from messages import Message, encode
from readstore.db import get_database
from sagas.outbox import deadline_passed
from sagas.store import SagaStore
from workers.runtime import periodic
from workers.runtime.settings import Settings

log = structlog.get_logger("sagaworks.deadlines")

TASK = "saga-deadlines"


class Sweeper:
    """Fires the step deadlines that have come; ``send`` takes each deadline message."""

    def __init__(
        self, store: SagaStore, send: Callable[[Message], None], refire: timedelta
    ) -> None:
        self.store = store
        self.send = send
        self.refire = refire

    def run_once(self, now: datetime | None = None) -> int:
        """One pass: the number of deadlines fired."""
        now = now or datetime.now(UTC)
        due = self.store.due(now)
        for record in due:
            self.send(deadline_passed(record.state))
        if due:
            later = now + self.refire
            self.store.collection.bulk_write(
                [self.store.postpone(record, later) for record in due], ordered=False
            )
            log.info("deadlines.fired", sagas=len(due))
        return len(due)


def to_saga(message: Message) -> None:
    """Enqueue ``message`` for the saga actor, under its own id."""
    from workers.subscribers.fulfilment import run_fulfilment_saga  # noqa: PLC0415 -- cycle

    envelope: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=run_fulfilment_saga.queue_name,
        actor_name=run_fulfilment_saga.actor_name,
        args=(encode(message),),
        kwargs={},
        options={},
        message_id=str(message.message_id),
    )
    run_fulfilment_saga.broker.enqueue(envelope)


def sweeper(settings: Settings) -> Sweeper:
    refire = timedelta(seconds=settings.saga_step_deadline_seconds)
    return Sweeper(SagaStore(get_database()), to_saga, refire)


def configure(settings: Settings) -> None:
    """At boot: sweep in this process's workers when the saga is on."""
    if settings.fulfilment_saga:
        periodic.register(TASK, lambda: sweeper(settings).run_once(), settings.saga_sweep_seconds)
    else:
        periodic.unregister(TASK)
