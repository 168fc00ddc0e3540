"""Group commit for projection actors: events that wait at once are applied as one batch.

A worker process keeps one group per projection. A thread handling a projection message
puts its event in and, if fewer than ``FLUSHES`` flushes of that projection are running,
flushes: it takes its own event and those waiting (up to ``LIMIT``), applies them with
``Projection.apply_batch`` (one bulk write per collection when they apply in turn), and
hands each its outcome. Threads whose events arrive while the flushes are full wait; when a
flush ends, the first of them flushes next. Nothing waits for a batch to fill: an event
alone is flushed at once, as before.

Each thread returns, and its message is acknowledged, only once the flush holding its event
is done: with its own outcome. An event's own error (one that cannot be placed, say) fails
its message only; a flush that fails as a whole (the store unreachable) fails every message
in it, and each is retried. Per-stream order and idempotency are the positions' (see
``readstore.projection``): a batch may hold a stream's events in any order, or twice, and
two flushes running at once are two writers of conditional updates, as two threads applying
one event each would be.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from messages import Event

#: Most events one flush applies.
LIMIT = 200
#: Flushes of one projection that may run at once in a process (``projection_flushes``).
#: With one, every thread with an event for that projection waits for the flush under way,
#: however slow its store reply (41% of worker-thread time on the command bench); a second
#: flush takes what arrived meanwhile: more messages a second where projection writes are
#: slow, in smaller batches (more round trips). See BENCHMARKS.md.
FLUSHES = 1

Outcome = bool | BaseException
ApplyBatch = Callable[[Sequence[Event]], Sequence[Outcome]]


@dataclass
class _Slot:
    """One waiting event: its outcome once flushed, or the turn to flush."""

    event: Event
    ready: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    leads: bool = False


class GroupCommit:
    """The events of one projection waiting in this process, and the flushes applying them."""

    def __init__(self, apply_batch: ApplyBatch, limit: int = LIMIT, flushes: int = FLUSHES) -> None:
        self._apply_batch = apply_batch
        self._limit = limit
        self.flushes = flushes
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._running = 0  # flushes under way, or leads handed on and not yet taken up

    def apply(self, event: Event) -> bool:
        """Apply ``event`` with whatever else is waiting; whether it was applied (``False``:
        already applied, or held); its error, raised, if it failed."""
        slot = _Slot(event)
        with self._lock:
            self._waiting.append(slot)
            if self._running < self.flushes:
                self._running += 1
                slot.leads = True
        if not slot.leads:
            slot.ready.wait()  # for the outcome, or for the turn to flush
        if slot.leads:
            self._lead(slot)
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return bool(slot.outcome)

    def _lead(self, slot: _Slot) -> None:
        """Flush a batch holding ``slot`` (unless another flush took it), then hand on."""
        with self._lock:
            taken = slot not in self._waiting
            if not taken:
                rest = [s for s in self._waiting if s is not slot]
                batch, self._waiting = [slot, *rest[: self._limit - 1]], rest[self._limit - 1 :]
        if taken:
            slot.finished.wait()  # in a flush under way: its outcome comes from there
        else:
            self._flush(batch)
        self._hand_over()

    def _flush(self, batch: list[_Slot]) -> None:
        try:
            outcomes = self._apply_batch([slot.event for slot in batch])
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.outcome = outcome
        except BaseException as exc:  # the whole flush failed: every message in it fails
            for slot in batch:
                slot.outcome = exc
        finally:
            for slot in batch:
                slot.finished.set()
                slot.ready.set()

    def _hand_over(self) -> None:
        """This flush's turn goes to the first event waiting that has none, if any."""
        with self._lock:
            following = next((s for s in self._waiting if not s.leads), None)
            if following is None:
                self._running -= 1
                return
            following.leads = True
        following.ready.set()
