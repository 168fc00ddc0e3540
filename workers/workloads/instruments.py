"""Where a bench's work goes: store round trips, publishes, deliveries and waits, by step.

A step is the message being handled (its domain type and the actor handling it). Every
MongoDB command and every publish is attributed to the step the thread is handling; work on
other threads (write-behind, relay, Dramatiq's delayed re-enqueues, the bench's own sends)
is attributed to the thread. Waits are timed on the threads that handle messages: the store
by the duration of each command, the broker by the time spent publishing (with Dramatiq's
blocking confirm) and in pipelined confirm waits.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware import Middleware
from pymongo import monitoring

try:  # the pipelined confirms and the periodic tasks, where this version has them
    from workers.runtime import confirms as _confirms
    from workers.runtime import periodic as _periodic
except ImportError:  # pragma: no cover -- measuring an older commit
    _confirms = _periodic = None  # type: ignore[assignment]  # optional here


@dataclass
class Step:
    deliveries: int = 0
    round_trips: int = 0
    #: Documents written: each update or delete statement, each document inserted (a bulk
    #: write is one round trip, but the store does each document's work).
    writes: int = 0
    publishes: int = 0
    store_seconds: float = 0.0
    broker_seconds: float = 0.0
    busy_seconds: float = 0.0
    confirm_waits: int = 0


class Ledger(Middleware):
    """A Dramatiq middleware that also feeds a pymongo listener; install with ``install``."""

    def __init__(self) -> None:
        self.steps: dict[str, Step] = defaultdict(Step)
        self._lock = threading.Lock()
        self._local = threading.local()

    def store_listener(self) -> monitoring.CommandListener:
        """The listener to give the workers' MongoDB client."""
        return _StoreListener(self)

    def install(self, broker: Any) -> None:
        broker.add_middleware(self)
        if _confirms is not None:
            _confirms.WAIT_OBSERVERS.append(self._confirm_waited)

    def reset(self) -> None:
        with self._lock:
            self.steps.clear()

    def uninstall(self) -> None:
        if _confirms is not None and self._confirm_waited in _confirms.WAIT_OBSERVERS:
            _confirms.WAIT_OBSERVERS.remove(self._confirm_waited)

    def step(self) -> str:
        current: str | None = getattr(self._local, "step", None)
        return current or f"({threading.current_thread().name.split('-')[0]} thread)"

    def add(self, step: str, **amounts: float) -> None:
        with self._lock:
            entry = self.steps[step]
            for name, amount in amounts.items():
                setattr(entry, name, getattr(entry, name) + amount)

    # -- Dramatiq hooks ----------------------------------------------------------------------
    def before_process_message(self, broker: Any, message: Any) -> None:
        self._local.step = step_name(message)
        self._local.started = time.perf_counter()
        self.add(self._local.step, deliveries=1)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        busy = time.perf_counter() - getattr(self._local, "started", time.perf_counter())
        self.add(self.step(), busy_seconds=busy)
        self._local.step = None

    after_skip_message = after_process_message

    def before_delay_message(self, broker: Any, message: Any) -> None:
        self.add("(delayed message held until due)", deliveries=1)

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self._local.enqueued = time.perf_counter()

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        took = time.perf_counter() - getattr(self._local, "enqueued", time.perf_counter())
        blocking = getattr(broker, "confirm_delivery", False) and (
            _confirms is None or _confirms.current() is None
        )
        self.add(self.step(), publishes=1, broker_seconds=took, confirm_waits=int(blocking))

    def _confirm_waited(self, seconds: float, _publishes: int) -> None:
        self.add(self.step(), broker_seconds=seconds, confirm_waits=1)

    def snapshot(self) -> list[tuple[str, Step]]:
        with self._lock:
            return [(name, Step(**vars(step))) for name, step in self.steps.items()]

    # -- totals ------------------------------------------------------------------------------
    def totals(self) -> Step:
        total = Step()
        with self._lock:
            for step in self.steps.values():
                for name in vars(total):
                    setattr(total, name, getattr(total, name) + getattr(step, name))
        return total

    def activity(self) -> int:
        """Deliveries, publishes and round trips so far, leaving out the periodic tasks'
        threads: they poll on a clock, so they never fall quiet."""
        tasks = _periodic.TASKS if _periodic else {}
        pollers = {f"({name.split('-')[0]} thread)" for name in tasks}
        with self._lock:
            return sum(
                step.deliveries + step.publishes + step.round_trips
                for name, step in self.steps.items()
                if name not in pollers
            )

    def handled(self) -> Step:
        """The totals over the steps that are messages handled (worker threads)."""
        total = Step()
        with self._lock:
            for name, step in self.steps.items():
                if not name.startswith("("):
                    for attr in vars(total):
                        setattr(total, attr, getattr(total, attr) + getattr(step, attr))
        return total


#: Where a write command lists what it writes, one document each.
WRITTEN = {"update": "updates", "delete": "deletes", "insert": "documents"}


class _StoreListener(monitoring.CommandListener):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        writes = len(event.command.get(WRITTEN.get(event.command_name, ""), ()))
        if event.command_name == "findAndModify":
            writes = 1
        self.ledger.add(self.ledger.step(), round_trips=1, writes=writes)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.ledger.add(self.ledger.step(), store_seconds=event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.ledger.add(self.ledger.step(), store_seconds=event.duration_micros / 1e6)


def step_name(message: Any) -> str:
    """``<message type> -> <actor>``, from the envelope's single domain-message argument."""
    args = getattr(message, "args", ())
    kind = args[0].get("type", "?") if args and isinstance(args[0], dict) else "?"
    return f"{kind} -> {message.actor_name}"


def table(ledger: Ledger, orders: int) -> list[dict[str, Any]]:
    """One row per step, per confirmed order, busiest first."""
    rows = []
    items = ledger.snapshot()
    for name, step in items:
        waits = round(step.confirm_waits / step.deliveries, 2) if step.deliveries else "-"
        rows.append(
            {
                "step": name,
                "deliveries": round(step.deliveries / orders, 2),
                "round_trips": round(step.round_trips / orders, 2),
                "writes": round(step.writes / orders, 2),
                "publishes": round(step.publishes / orders, 2),
                "confirm_waits_per_delivery": waits,
                "store_ms": round(step.store_seconds * 1000 / orders, 2),
                "broker_ms": round(step.broker_seconds * 1000 / orders, 2),
            }
        )
    return sorted(rows, key=lambda r: (-r["round_trips"], r["step"]))


COLUMNS = ("deliveries", "round_trips", "writes", "publishes", "confirm_waits_per_delivery")


def render(rows: list[dict[str, Any]]) -> list[str]:
    """The step table as Markdown, per confirmed order, with a total row."""
    headers = [
        "step (message -> actor)",
        "deliveries",
        "store round trips",
        "documents written",
        "publishes",
        "confirm waits per delivery",
        "store ms",
        "broker ms",
    ]
    cells = [
        [row["step"], *(row[c] for c in COLUMNS), row["store_ms"], row["broker_ms"]] for row in rows
    ]
    summed = ("deliveries", "round_trips", "writes", "publishes")
    totals = [round(sum(r[c] for r in rows), 1) for c in summed]
    return markdown(headers, [*cells, ["**total**", *totals, "", "", ""]])


def markdown(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table: the first column a label, the others figures (aligned right); an
    empty cell stays blank."""

    def line(cells: list[Any]) -> str:
        return "|" + "|".join(f" {cell} " if cell != "" else " " for cell in cells) + "|"

    return [line(headers), "|---" + "|---:" * (len(headers) - 1) + "|", *map(line, rows)]
