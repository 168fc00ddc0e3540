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

import structlog

from messages import Message
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


def sweeper(settings: Settings, send: Callable[[Message], None]) -> Sweeper:
    refire = timedelta(seconds=settings.saga_step_deadline_seconds)
    return Sweeper(SagaStore(get_database()), send, refire)


def configure(settings: Settings, send: Callable[[Message], None]) -> None:
    """At boot: sweep in this process's workers when the saga is on; ``send`` takes each
    deadline to the saga's actor."""
    if settings.fulfilment_saga:
        task = lambda: sweeper(settings, send).run_once()  # noqa: E731 -- a one-line task
        periodic.register(TASK, task, settings.saga_sweep_seconds)
    else:
        periodic.unregister(TASK)
