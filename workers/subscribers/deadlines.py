"""The saga sweeper: sends ``StepDeadlinePassed`` to each saga whose step deadline came, and
sends again what a saga left pending by then.

A saga's deadline is a field of its document (``wake_at``, indexed), set when it enters a
step (for a finished saga, a step later while messages are pending: ``sagas.store``). One
pass reads the sagas whose ``wake_at`` has come (one indexed query, usually empty); it sends
again the messages each still has pending (their "sent" mark was lost with the process that
sent them, or their send failed; deterministic ids, so their handlers take each once),
enqueues the deadline message of each whose deadline came (deterministic id: the step and
the deadline), then, in one bulk write, forgets what it sent and moves ``wake_at`` on: one
step further after a deadline, so a lost message is sent again later; to the deadline, or
never for a finished saga, otherwise. It runs in every worker process
(``workers.runtime.periodic``); passes that race send the same message twice, which its
receiver takes once. Nothing is held unacknowledged in RabbitMQ, so deadlines may be longer
than its consumer timeout, and a deadline that fell due while every worker was down fires
on the first pass after they are back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from pymongo import UpdateOne

from messages import Message
from readstore.db import get_database
from sagas.outbox import deadline_passed
from sagas.store import SagaRecord, SagaStore
from workers.runtime import periodic
from workers.runtime.settings import Settings

log = structlog.get_logger("sagaworks.deadlines")

TASK = "saga-deadlines"


Send = Callable[[Message], None]


class Sweeper:
    """Fires the step deadlines that have come (``send`` takes each deadline message) and
    sends again what stayed pending (``resend`` takes each command)."""

    def __init__(self, store: SagaStore, send: Send, resend: Send, refire: timedelta) -> None:
        self.store = store
        self.send = send
        self.resend = resend
        self.refire = refire

    def run_once(self, now: datetime | None = None) -> int:
        """One pass: the number of deadlines fired."""
        now = now or datetime.now(UTC)
        due = self.store.due(now)
        updates = [update for record in due for update in self._wake(record, now)]
        if updates:
            self.store.collection.bulk_write(updates, ordered=False)
        fired = sum(1 for r in due if _due(r, now))
        if due:
            log.info("deadlines.fired", sagas=fired, resent=sum(len(r.pending) for r in due))
        return fired

    def _wake(self, record: SagaRecord, now: datetime) -> list[UpdateOne]:
        """Send what ``record`` left pending and its deadline if due; the updates that follow."""
        updates = []
        for message in record.pending:
            self.resend(message)
        if record.pending:
            sent = [str(m.message_id) for m in record.pending]
            updates.append(self.store.sent(record.saga_id, sent))
        if _due(record, now):
            self.send(deadline_passed(record.state))
            return [*updates, self.store.postpone(record, now + self.refire)]
        return [*updates, self.store.postpone(record, record.state.deadline)]


def _due(record: SagaRecord, now: datetime) -> bool:
    return record.state.deadline is not None and record.state.deadline <= now


def sweeper(settings: Settings, send: Send, resend: Send) -> Sweeper:
    refire = timedelta(seconds=settings.saga_step_deadline_seconds)
    return Sweeper(SagaStore(get_database()), send, resend, refire)


def configure(settings: Settings, send: Send, resend: Send) -> None:
    """At boot: sweep in this process's workers when the saga is on; ``send`` takes each
    deadline to the saga's actor, ``resend`` each pending command to its context."""
    if settings.fulfilment_saga:
        task = lambda: sweeper(settings, send, resend).run_once()  # noqa: E731 -- one line
        periodic.register(TASK, task, settings.saga_sweep_seconds)
    else:
        periodic.unregister(TASK)
