"""Group commit for projection actors: events that wait at once are applied as one batch.

A worker process keeps one group per projection. A thread handling a projection message
puts its event in and, if no flush of that projection is running, flushes: it takes the
events waiting (up to ``LIMIT``), applies them with ``Projection.apply_batch`` (one bulk
write per collection when they apply in turn), and hands each its outcome. Threads whose
events arrived during a flush wait for it to end; the first of them flushes next. Under
load the events queue up during each flush, so batches form by themselves. At a low rate
each event would find itself alone and cost a round trip of its own: an event that finds
no other waiting first waits up to ``linger`` (``projection_linger_ms``) for a second one,
and is flushed as soon as one comes. Only the read model's lag pays for it, never a
command or a saga step, which do not wait on projections.

Each thread returns, and its message is acknowledged, only once the flush holding its event
is done: with its own outcome. An event's own error (one that cannot be placed, say) fails
its message only; a flush that fails as a whole (the store unreachable) fails every message
in it, and each is retried. Per-stream order and idempotency are the positions' (see
``readstore.projection``): a batch may hold a stream's events in any order, or twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from messages import Event
from workers.runtime.settings import Settings

#: Most events one flush applies.
LIMIT = 200

Outcome = bool | BaseException
ApplyBatch = Callable[[Sequence[Event]], Sequence[Outcome]]


@dataclass
class _Slot:
    """One waiting event: its outcome once flushed, or the turn to flush."""

    event: Event
    ready: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    leads: bool = False


class GroupCommit:
    """The events of one projection waiting in this process, and the flush applying them."""

    def __init__(
        self, apply_batch: ApplyBatch, limit: int = LIMIT, linger: float | None = None
    ) -> None:
        self._apply_batch = apply_batch
        self._limit = limit
        #: Seconds a lone event waits for another (``None``: from the settings, when first
        #: needed).
        self.linger = linger
        self._lock = threading.Lock()
        self._joined = threading.Condition(self._lock)
        self._waiting: list[_Slot] = []
        self._flushing = False

    def apply(self, event: Event) -> bool:
        """Apply ``event`` with whatever else is waiting; whether it was applied (``False``:
        already applied, or held); its error, raised, if it failed."""
        slot = _Slot(event)
        with self._lock:
            self._waiting.append(slot)
            slot.leads = not self._flushing
            self._flushing = True
            if len(self._waiting) == 2:
                self._joined.notify()  # a lone event waiting for company has it
        if not slot.leads:
            slot.ready.wait()  # for the outcome, or for the turn to flush
        if slot.outcome is None:
            self._flush()
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return bool(slot.outcome)

    def _flush(self) -> None:
        linger = self._linger()
        with self._lock:
            if linger and len(self._waiting) == 1:
                self._joined.wait_for(lambda: len(self._waiting) > 1, linger)
            batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
        try:
            outcomes = self._apply_batch([slot.event for slot in batch])
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.outcome = outcome
        except BaseException as exc:  # the whole flush failed: every message in it fails
            for slot in batch:
                slot.outcome = exc
        finally:
            self._hand_over()
            for slot in batch:
                slot.ready.set()

    def _linger(self) -> float:
        if self.linger is None:  # read once, when first needed (not at import)
            self.linger = Settings().projection_linger_ms / 1000
        return self.linger

    def _hand_over(self) -> None:
        """The turn to flush goes to the first event waiting, if any."""
        with self._lock:
            if not self._waiting:
                self._flushing = False
                return
            following = self._waiting[0]
            following.leads = True
        following.ready.set()
