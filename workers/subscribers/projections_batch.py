"""Group commit for projection actors: events that wait at once are applied as one batch.

A worker process keeps one group per projection (``workers.runtime.group``). A thread
handling a projection message puts its event in and, if no flush of that projection is
running, flushes: it takes the events waiting (up to ``LIMIT``), applies them with
``Projection.apply_batch`` (one bulk write per collection when they apply in turn), and
hands each its outcome. Threads whose events arrived during a flush wait for it to end; the
first of them flushes next. Under
load the events queue up during each flush, so batches form by themselves. At a low rate
each event would find itself alone and cost a round trip of its own: an event that finds
no other waiting first waits up to ``linger`` (``projection_linger_ms``) for a second one,
and is flushed as soon as one comes. Only the read model's lag pays for it, never a
command or a saga step, which do not wait on projections.

Each thread returns, and its message is acknowledged, only once the flush holding its event
is done: with its own outcome. An event's own error (one that cannot be placed, a document
the store refuses to change) fails its message only. A flush that fails as a whole because
the store is away (unreachable, timed out, a write concern not met) fails every message in
it, and each is retried; one that fails as a whole for any other reason may be one event's
fault (a write the driver refuses before sending, say), so each event is applied alone and
only the one at fault fails. Per-stream order and idempotency are the positions' (see
``readstore.projection``): a batch may hold a stream's events in any order, or twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    PyMongoError,
    WriteConcernError,
)

from messages import Event
from workers.runtime.group import Group
from workers.runtime.settings import Settings

#: Most events one flush applies.
LIMIT = 200

Outcome = bool | BaseException
ApplyBatch = Callable[[Sequence[Event]], Sequence[Outcome]]


class GroupCommit(Group[Event]):
    """The events of one projection waiting in this process, and the flush applying them."""

    def __init__(
        self, apply_batch: ApplyBatch, limit: int = LIMIT, linger: float | None = None
    ) -> None:
        super().__init__(apply_batch, limit, linger)

    def apply(self, event: Event) -> bool:
        """Apply ``event`` with whatever else is waiting; whether it was applied (``False``:
        already applied, or held); its error, raised, if it failed."""
        return bool(self.submit(event))

    def default_linger(self) -> float:
        """``projection_linger_ms``, read once, when first needed (not at import)."""
        return Settings().projection_linger_ms / 1000

    def divisible(self, error: BaseException) -> bool:
        """Any error but the store's being away may be one event's fault."""
        return isinstance(error, Exception) and not store_away(error)


def store_away(error: BaseException) -> bool:
    """Whether ``error`` says the store could not take the write (not that it refused it)."""
    if isinstance(error, BulkWriteError):
        return bool(error.details.get("writeConcernErrors"))
    if isinstance(error, PyMongoError) and error.has_error_label("RetryableWriteError"):
        return True
    away = (ConnectionFailure, ExecutionTimeout, WriteConcernError, OSError)
    return isinstance(error, away)
