"""Explore the fulfilment saga in every order its messages can take, and check the invariants.

One order goes through the real saga runner and step table (``sagas.runner``), the real
inventory (``Inventory``), payment and order deciders (``commands.execute`` with their
aggregates), on in-memory stores with the MongoDB ones' semantics and no broker. The
messages in flight form a bag: at each point the exploration delivers any one of them, or
spends a perturbation from its budget: a step deadline fires, an upstream ``CancelOrder``
arrives, an already delivered message is delivered again, the saga's next send fails (the
message that caused it is redelivered later). When nothing is in flight the run stops: the
sweeper fires whatever deadline is left, and the invariants are checked (``invariants``).

``explore`` walks every choice (exhaustive, depth first, worlds copied at each branch);
``walk`` takes random choices from a seed, with larger budgets, for long runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from workers.contexts import payments
from workers.workloads.exploration.choices import options, step
from workers.workloads.exploration.model import SCENARIOS, Budget, Choice, Scenario
from workers.workloads.exploration.world import World

__all__ = ["SCENARIOS", "Budget", "Report", "Scenario", "explore", "walk"]


@dataclass
class Report:
    """What an exploration saw: runs, their coverage, and the runs that broke an invariant."""

    runs: int = 0
    states: int = 0
    ends: int = 0
    seconds: float = 0.0
    covered: set[tuple[str, str]] = field(default_factory=set)
    failures: list[tuple[list[str], list[str]]] = field(default_factory=list)

    def record(self, world: World) -> None:
        found = world.finish()
        self.ends += 1
        if found and len(self.failures) < 20:
            self.failures.append((world.trace, found))

    def summary(self) -> dict[str, Any]:
        return {
            "orderings": self.runs,
            "distinct_states": self.states,
            "distinct_ends": self.ends,
            "seconds": round(self.seconds, 2),
            "pairs_covered": len(self.covered),
            "failed_runs": len(self.failures),
            "first_failures": [{"path": p, "violations": v} for p, v in self.failures[:3]],
        }


def explore(scenario: Scenario, budget: Budget) -> Report:
    """Every ordering and every placement of the budget's perturbations, exhaustively.

    Worlds with equal keys have equal futures, so each is explored once and the orderings
    through it are counted, not walked again (``runs`` counts orderings, ``states`` worlds).
    """
    report, started = Report(), time.perf_counter()
    memo: dict[Hashable, int] = {}

    def visit(world: World) -> int:
        key = world.key()
        if key not in memo:
            memo[key] = sum(_branch(world, choice) for choice in options(world))
        return memo[key]

    def _branch(world: World, choice: Choice) -> int:
        child = world.copy()
        step(child, choice)
        if choice[0] != "stop":
            return visit(child)
        report.record(child)
        return 1

    with _gateway():
        report.runs = visit(World.start(scenario, budget, report.covered))
    report.states, report.seconds = len(memo), time.perf_counter() - started
    return report


def walk(scenario: Scenario, budget: Budget, runs: int, seed: int) -> Report:
    """``runs`` random runs from ``seed``: one choice at random at each point."""
    report, started, rng = Report(), time.perf_counter(), random.Random(seed)
    with _gateway():
        for _ in range(runs):
            world = World.start(scenario, budget, report.covered)
            report.runs += 1
            while (choice := rng.choice(options(world)))[0] != "stop":
                step(world, choice)
            report.record(world)
    report.seconds = time.perf_counter() - started
    return report


class _gateway:
    """The simulated payment gateway, with no faults, for the exploration's duration."""

    def __enter__(self) -> None:
        self.previous = payments._gateway
        payments.set_gateway(payments.SimulatedGateway())

    def __exit__(self, *exc: object) -> None:
        payments.set_gateway(self.previous)
