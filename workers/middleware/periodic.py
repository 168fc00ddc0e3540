"""Middleware: run the registered periodic tasks (``workers.runtime.periodic``) in each worker."""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.middleware import Middleware

from workers.runtime import periodic


class Periodic(Middleware):
    """One thread per registered task while the worker runs; stopped at its shutdown."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.threads:
            return
        self.stop.clear()
        for task in list(periodic.TASKS.values()):
            thread = threading.Thread(
                target=periodic.run_until, args=(task, self.stop), name=task.name, daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.threads = []
