"""``sagaworks audit``: the fulfilment invariants checked against a live store, in bounded time.

Each invariant has a name an operator (or a monitor) can act on:

- ``stock_conserved``: a confirmed order committed what it reserved, a cancelled one gave it
  back; no SKU's availability ever went below zero; nothing stays reserved once every
  order has settled.
- ``money_conserved``: a confirmed order kept exactly its total; no order charged twice or
  refunded more than it paid.
- ``no_charge_kept_for_cancelled``: a cancelled order kept no money.
- ``orders_terminal``: every placed order ends confirmed or cancelled, its saga agrees, and
  no order has events without being placed.
- ``sagas_terminal_by_deadline``: no saga is still running, or holds messages unsent, past
  its step deadline (plus the grace).
- ``read_models_match_log``: the read models agree with a fold of the log: every order
  summary (status, customer, total, position), customer profile (orders placed, confirmed,
  cancelled, money spent) and inventory level; with ``exact_read_models`` every field of
  every projection, against a rebuild in memory through the projections' own code.
- ``log_intact``: no stream is shorter than when an earlier audit read it (lost writes).

Bounded, usable from cron: with a budget the orders are checked in slices of the order-id
space in rotation (a cursor in the ``audits`` collection: each run resumes where the last
stopped, and every order is covered once per cycle of runs), each slice one range of the
``(stream_id, version)`` index per kind of stream; each SKU's stream incrementally from
where the last audit folded it; what was not reached is named, and the run is incomplete.
Only orders quiet for longer than the grace are judged (the rest are in flight).
``full=True`` checks everything in one read of the log (``audit_log``), unbounded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pymongo.database import Database

from readstore.db import Document
from sagas.fulfilment import TERMINAL, SagaStatus
from workers.ops.audit_log import read_log
from workers.ops.audit_scan import OrderPass, SkuPass

INVARIANTS = (
    "stock_conserved",
    "money_conserved",
    "no_charge_kept_for_cancelled",
    "orders_terminal",
    "sagas_terminal_by_deadline",
    "read_models_match_log",
    "log_intact",
)
RUNNING = sorted({s.value for s in SagaStatus} - {str(s) for s in TERMINAL})
#: The audit's exit codes (2 and 3 are the command line's: a usage error, no server).
HEALTHY, BROKEN, PARTIAL = 0, 1, 4
#: Findings kept per invariant in a report (the count is exact).
KEPT = 20


class Budget:
    """Seconds left for the audit; ``None``: unbounded."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def spent(self) -> bool:
        return self.left() == 0.0


@dataclass
class Report:
    findings: list[tuple[str, str]] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)
    not_reached: list[str] = field(default_factory=list)
    money: dict[str, Decimal] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    @property
    def broken(self) -> list[str]:
        seen = {name for name, _ in self.findings}
        return [name for name in INVARIANTS if name in seen]

    @property
    def healthy(self) -> bool:
        return not self.findings

    @property
    def complete(self) -> bool:
        """Whether this run checked everything (a budgeted run stopped short is not)."""
        return not self.not_reached

    @property
    def exit_code(self) -> int:
        """0: every invariant holds, everything checked; 1: an invariant is broken;
        4: nothing broken in what was checked, but the budget ran out first."""
        return HEALTHY if self.healthy and self.complete else BROKEN if self.findings else PARTIAL

    def add(self, found: list[tuple[str, str]]) -> None:
        self.findings += found

    def asdict(self) -> dict[str, Any]:
        by_name: dict[str, list[str]] = {}
        for name, detail in self.findings:
            by_name.setdefault(name, []).append(detail)
        return {
            "healthy": self.healthy,
            "complete": self.complete,
            "broken": self.broken,
            "findings": {n: {"count": len(d), "first": d[:KEPT]} for n, d in by_name.items()},
            "checked": dict(self.checked),
            "not_reached": self.not_reached,
            "money": {k: str(v) for k, v in self.money.items()},
            "elapsed_seconds": round(self.elapsed_seconds, 2),
        }


def audit(
    database: Database[Document],
    *,
    budget_seconds: float | None = 60.0,
    grace: timedelta = timedelta(minutes=5),
    saga: bool = True,
    full: bool = False,
    exact_read_models: bool = False,
) -> Report:
    """Check every invariant; ``full`` (or no budget) covers the whole store in this run, in
    one read of the log; ``exact_read_models`` adds the rebuild comparison of every field."""
    started, report = time.monotonic(), Report()
    budget = Budget(None if full else budget_seconds)
    cutoff = datetime.now(UTC) - grace
    report.add(overdue_sagas(database, cutoff))
    log = read_log(database) if budget.deadline is None else None
    report.checked["commits_read"] += log.read if log else 0  # the slices count their own
    orders = OrderPass(database, cutoff, saga=saga, resume=log is None)
    orders.run(report, budget.spent, log)
    SkuPass(database, cutoff, log=log).run(report, budget.spent, orders)
    if orders.complete:  # a customer's figures need all of their orders
        report.add(orders.customers.problems(database))
        report.checked["customer_profile_passes"] += 1
    if exact_read_models:
        check_read_models(database, report, budget)
    report.elapsed_seconds = time.monotonic() - started
    return report


def overdue_sagas(database: Database[Document], cutoff: datetime) -> list[tuple[str, str]]:
    """Running sagas that should have ended by ``cutoff`` (one query on the status index:
    running sagas are few; finished ones holding unsent messages are found per slice)."""
    fields = {"status": 1, "deadline": 1, "updated_at": 1}
    running = database["sagas"].find({"status": {"$in": RUNNING}}, fields)
    return [
        ("sagas_terminal_by_deadline", f"saga {d['_id']}: {d['status']} past its deadline")
        for d in running
        if (d.get("deadline") or d["updated_at"]) < cutoff
    ]


def read_model_differences(database: Database[Document]) -> list[str]:
    """Where the read models differ from a fold of the log (the one call to swap)."""
    from workers.ops.verify import verify_read_models  # noqa: PLC0415 -- swappable check

    try:
        return verify_read_models(database).differences
    except RuntimeError as exc:  # the log has a gap: the read models cannot be folded from it
        return [f"read models cannot be folded from the log: {exc}"]


def check_read_models(
    database: Database[Document],
    report: Report,
    budget: Budget,
    differences: Callable[[Database[Document]], list[str]] = read_model_differences,
) -> None:
    """Read models against the log within the budget; a difference must persist across two
    looks (a read model catching up with a write in flight is not a finding)."""
    first = None if budget.spent() else _within(lambda: differences(database), budget.left())
    if first is None:
        report.not_reached.append("read_models_match_log")
        return
    report.checked["read_model_passes"] += 1
    if first:
        time.sleep(1.0)
        second = _within(lambda: differences(database), budget.left())
        persisting = first if second is None else [d for d in first if d in set(second)]
        report.add([("read_models_match_log", d) for d in persisting])


def _within(work: Callable[[], list[str]], seconds: float | None) -> list[str] | None:
    """``work()``, or ``None`` if it does not finish in ``seconds`` (it is left to finish)."""
    if seconds is None:
        return work()
    result: list[list[str]] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0] if result else None
