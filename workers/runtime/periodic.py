"""Periodic tasks a worker process runs beside its actors (the saga deadline sweeper).

A context registers a task at boot; the ``Periodic`` middleware runs each registered task in
a thread of every worker process, every ``interval`` seconds, until the worker shuts down.
A task must be safe to run in several processes at once: each pass is idempotent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("sagaworks.periodic")


@dataclass(frozen=True)
class Task:
    name: str
    run: Callable[[], object]
    interval: float


TASKS: dict[str, Task] = {}


def register(name: str, run: Callable[[], object], interval: float) -> None:
    TASKS[name] = Task(name, run, interval)


def unregister(name: str) -> None:
    TASKS.pop(name, None)


def run_until(task: Task, stop: threading.Event) -> None:
    """Run ``task`` every ``interval`` until ``stop``; a failed pass is logged and retried."""
    log.info("periodic.started", task=task.name, interval=task.interval)
    while not stop.wait(task.interval):
        try:
            task.run()
        except Exception:
            log.exception("periodic.failed", task=task.name)  # the next pass tries again
