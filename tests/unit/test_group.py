"""The group commit when a thread waiting in it is interrupted (Dramatiq's time limit, a
shutdown): the others are still flushed, and the group keeps flushing afterwards."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded

from workers.runtime.group import Group


class Gate:
    """A flush that holds its first batch until ``release``, recording every batch."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[Any]) -> list[object]:
        self.batches.append(list(items))
        self.started.set()
        if len(self.batches) == 1:
            self.release.wait(5)
        return [f"{item} written" for item in items]


def interrupt(thread: threading.Thread) -> None:
    """Raise ``TimeLimitExceeded`` in ``thread``, as Dramatiq's time limit does."""
    ident = ctypes.c_ulong(thread.ident or 0)
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ident, ctypes.py_object(TimeLimitExceeded))
    assert done == 1


def start(group: Group[Any], item: str, results: dict[str, Any]) -> threading.Thread:
    def submit() -> None:
        try:
            results[item] = group.submit(item)
        except BaseException as exc:  # what the interrupted thread ended with
            results[item] = exc

    thread = threading.Thread(target=submit, daemon=True)
    thread.start()
    return thread


def waiting(group: Group[Any], count: int) -> None:
    while len(group._waiting) < count:
        threading.Event().wait(0.005)


@pytest.mark.parametrize("linger", [0.0, 0.05])
def test_a_thread_interrupted_while_waiting_leaves_the_group_flushing(linger: float) -> None:
    # Given a flush under way, and two items waiting behind it
    gate = Gate()
    group: Group[Any] = Group(gate, limit=1, linger=linger)
    results: dict[str, Any] = {}
    first = start(group, "first", results)
    gate.started.wait(5)
    doomed = start(group, "doomed", results)
    waiting(group, 1)
    other = start(group, "other", results)
    waiting(group, 2)

    # When the first waiting thread is interrupted (its time limit), then the flush ends
    interrupt(doomed)
    gate.release.set()
    for thread in (first, doomed, other):
        thread.join(5)

    # Then the interrupted thread ended with its interruption, and the rest was written
    assert isinstance(results["doomed"], TimeLimitExceeded)
    assert results["first"] == "first written"
    assert results["other"] == "other written"
    assert not other.is_alive()

    # And the group still flushes what comes next
    assert group.submit("later") == "later written"


def test_a_leader_interrupted_while_it_waits_for_company_hands_its_turn_on() -> None:
    # Given a group whose lone items wait a while for company, and one item waiting so
    group: Group[Any] = Group(lambda items: [f"{i} written" for i in items], 10, linger=2.0)
    results: dict[str, Any] = {}
    lone = start(group, "lone", results)
    waiting(group, 1)
    threading.Event().wait(0.05)

    # When its thread is interrupted during the wait
    interrupt(lone)
    lone.join(5)

    # Then it ended with the interruption, and the next item is flushed as usual
    assert isinstance(results["lone"], TimeLimitExceeded)
    assert group.submit("next") == "next written"
