"""Fault injection for tests and the demo: handler calls that fail transiently, messages twice.

Off unless ``fault_failure_rate`` / ``fault_duplicate_rate`` are set: a failure is raised
before the actor runs (``Retries`` retries it), and a duplicate is the very same envelope
enqueued again, as a broker redelivery would bring it.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from workers.broker import MIDDLEWARE_FACTORIES
from workers.errors import TransientError
from workers.settings import Settings


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

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if self._roll(self.failure_rate):
            raise TransientError("injected transient failure")

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if delay is not None or getattr(self._local, "busy", False):
            return
        if self._roll(self.duplicate_rate):
            self._local.busy = True
            try:
                broker.enqueue(message)
            finally:
                self._local.busy = False


MIDDLEWARE_FACTORIES.append(FaultInjection.from_settings)
