"""Group commit: writes that threads of one process make at once go to the store together.

Each thread puts its item in and, if no flush is running, flushes: it takes the items
waiting (up to a limit), writes them with the group's ``flush`` (one store command for all),
and hands each its outcome. Threads whose items arrived during a flush wait for it to end;
the first of them flushes next. Under load items queue up during each flush, so batches form
by themselves, and a thread whose item finds the store idle does not wait: an item alone is
flushed at once, unless the group has a ``linger`` (then a lone item waits up to that long
for a second one, and goes as soon as one comes).

Each thread returns only once the flush holding its item is done, with its own outcome: the
flush says it per item (an item's own failure is that item's only). A flush that fails as a
whole fails every item in it, unless the group says the error may be one item's fault
(``divisible``): then each item is written alone, so that only the one at fault fails and
the others are not retried, and in the end dead-lettered, for a neighbour's sake. A thread
interrupted while it waits (Dramatiq's time limit, a shutdown) takes its item back, and
passes the turn to flush on if it was its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
#: An item's outcome as the flush tells it: its result, or its own error.
Outcome = object
Flush = Callable[[Sequence[T]], Sequence[Outcome]]


@dataclass
class _Slot(Generic[T]):
    """One waiting item: its outcome once flushed, or the turn to flush."""

    item: T
    ready: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    done: bool = False
    leads: bool = False


class Group(Generic[T]):
    """The items waiting in this process to be written together, and the flush writing them."""

    def __init__(self, flush: Flush[T], limit: int, linger: float | None = 0.0) -> None:
        self._write = flush
        self._limit = limit
        #: Seconds a lone item waits for another (``None``: ask ``_linger`` when first needed).
        self.linger = linger
        self._lock = threading.Lock()
        self._joined = threading.Condition(self._lock)
        self._waiting: list[_Slot[T]] = []
        self._flushing = False

    def submit(self, item: T) -> Outcome:
        """Write ``item`` with whatever else is waiting; its outcome, or its error raised."""
        slot: _Slot[T] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            slot.leads = not self._flushing
            self._flushing = True
            if len(self._waiting) == 2:
                self._joined.notify()  # a lone item waiting for company has it
        try:
            if not slot.leads:
                slot.ready.wait()  # for the outcome, or for the turn to flush
            if not slot.done:
                self._flush()
        except BaseException:  # interrupted while waiting (a time limit, a shutdown)
            self._withdraw(slot)
            raise
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return slot.outcome

    def default_linger(self) -> float:
        """The linger of a group made with ``linger=None``."""
        return 0.0

    def divisible(self, error: BaseException) -> bool:
        """Whether a flush of several items that failed as a whole with ``error`` may have
        failed for one of them (then each is written alone); never, by default."""
        return False

    def _flush(self) -> None:
        if self.linger is None:
            self.linger = self.default_linger()
        batch: list[_Slot[T]] = []
        try:
            with self._lock:
                if self.linger and len(self._waiting) == 1:
                    self._joined.wait_for(lambda: len(self._waiting) > 1, self.linger)
                batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            outcomes = self._write([slot.item for slot in batch])
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.outcome = outcome
        except BaseException as exc:  # the whole flush failed, or this thread was interrupted
            if not batch:
                raise  # before it took any item: its own is withdrawn by ``submit``
            for slot in batch:  # each item's failure, unless written alone below
                slot.outcome = exc
            if len(batch) > 1 and self.divisible(exc):
                for slot in batch:
                    slot.outcome = self._alone(slot.item)
        finally:
            if batch:
                self._finish(batch)

    def _finish(self, batch: list[_Slot[T]]) -> None:
        """The flush of ``batch`` is over: the turn to flush goes on, its threads return."""
        for slot in batch:
            slot.done = True
        self._hand_over()
        for slot in batch:
            slot.ready.set()

    def _withdraw(self, slot: _Slot[T]) -> None:
        """Take back the item of a thread interrupted before its flush; if the turn to flush
        was its, it goes to the next item (the others would otherwise wait for good)."""
        with self._lock:
            if not any(waiting is slot for waiting in self._waiting):
                return  # in a flush already: the flushing thread hands its turn on
            self._waiting = [waiting for waiting in self._waiting if waiting is not slot]
            if not slot.leads:
                return
        self._hand_over()

    def _alone(self, item: T) -> Outcome:
        """``item`` written in a flush of its own: its outcome, or its error."""
        try:
            return self._write([item])[0]
        except Exception as exc:
            return exc

    def _hand_over(self) -> None:
        """The turn to flush goes to the first item waiting, if any."""
        with self._lock:
            if not self._waiting:
                self._flushing = False
                return
            following = self._waiting[0]
            following.leads = True
        following.ready.set()
