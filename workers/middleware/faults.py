"""Fault injection for tests and the demo: handler calls that fail transiently, messages twice.

In the stack only when ``fault_failure_rate`` / ``fault_duplicate_rate`` are set.
A failing call raises ``TransientError`` (``Retries`` retries it), half the time before
the handler runs and half the time after it did its work, so a retry also tests
idempotency. A duplicate is the very same envelope enqueued again, as a broker
redelivery would bring it.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from messages.errors import TransientError
from workers.runtime.settings import Settings


class FaultInjection(Middleware):
    def __init__(self, failure_rate: float, duplicate_rate: float, seed: int | None = None) -> None:
        self.failure_rate = failure_rate
        self.duplicate_rate = duplicate_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> FaultInjection:
        return cls(settings.fault_failure_rate, settings.fault_duplicate_rate)

    def _roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def after_declare_actor(self, broker: dramatiq.Broker, actor: Any) -> None:
        # Middleware hooks cannot fail a message (Dramatiq logs and swallows their errors),
        # so a failing call is injected around the actor's function.
        if self.failure_rate > 0 and not getattr(actor.fn, "_faulty", False):
            actor.fn = self._faulty(actor.fn)

    def _faulty(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            fail, after = self._roll(self.failure_rate), self._roll(0.5)
            if fail and not after:
                raise TransientError("injected transient failure (before the handler)")
            result = fn(*args, **kwargs)
            if fail:
                raise TransientError("injected transient failure (after the handler)")
            return result

        call._faulty = True  # type: ignore[attr-defined]
        return call

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if delay is not None or getattr(self._local, "busy", False):
            return
        if self._roll(self.duplicate_rate):
            self._local.busy = True
            try:
                broker.enqueue(message)
            finally:
                self._local.busy = False
