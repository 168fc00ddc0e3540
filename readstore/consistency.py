"""Consistency tokens: read-your-writes by waiting, bounded, for a read model to catch up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class ConsistencyToken:
    """A stream and the version a write reached; a read passes it to see that write."""

    stream_id: str
    version: int

    def __str__(self) -> str:
        return f"{self.stream_id}:{self.version}"

    @classmethod
    def parse(cls, text: str) -> Self:
        stream_id, sep, version = text.rpartition(":")
        if not sep or not stream_id or not version.isdigit():
            raise ValueError(f"not a consistency token: {text!r} (expected STREAM:VERSION)")
        return cls(stream_id, int(version))


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A query's answer: the data, and whether it is older than the token asked for."""

    value: T
    stale: bool = False


def wait_until(reached: Callable[[], bool], timeout: float, first_pause: float = 0.005) -> bool:
    """Poll ``reached`` with growing pauses until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    pause = first_pause
    while True:
        if reached():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.1)
