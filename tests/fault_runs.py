"""Runs of the fault-injection suite: a workload of orders, a fault per batch, the checks
and the results table. ``run_schedule(stack, [Fault(...), ...], orders)`` is the entry point."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from dataclasses import asdict
from decimal import Decimal

from pymongo.database import Database

from messages.customers import RegisterCustomer
from messages.inventory import AddStock
from readstore.db import Document
from readstore.projection import parked_streams
from sagas.fulfilment import TERMINAL
from tests.faults import Fault, Outcome, Stack, strike
from workers.deadletters.store import DEAD
from workers.ops.invariants import check_fulfilment
from workers.ops.verify import verify_read_models
from workers.workloads.demo import CATALOG, random_order
from workers.write.eventstore import EventStore


# -- the workload ----------------------------------------------------------------------------
class Workload:
    """Customers, stock and orders published from this process (``publish()`` rides through
    broker outages on its own)."""

    def __init__(self, stack: Stack, customers: int = 10, seed: int = 11) -> None:
        from workers.boot import boot
        from workers.publishing import publish

        self.publish = publish
        self.runtime = boot(stack.settings, logging=False, embedded_ok=False)
        self.rng = random.Random(seed)
        self.customers = [uuid.uuid4() for _ in range(customers)]
        receipts = []
        for i, customer in enumerate(self.customers):
            limit = Decimal("40") if i % 10 == 9 else Decimal("10000")
            name, email = f"Customer {i}", f"c{i}@example.com"
            receipts.append(
                self.publish(
                    RegisterCustomer(
                        customer_id=customer, name=name, email=email, payment_limit=limit
                    )
                )
            )
        for receipt in receipts:  # orders of unknown customers would be rejected
            if receipt.wait(120) is None:
                raise TimeoutError("the worker did not register the customers")
        self.placed: list[str] = []

    def restock(self, orders: int) -> None:
        demand = max(1, orders * 4 // len(CATALOG))
        for sku, _ in CATALOG:
            quantity = self.rng.randint(demand * 3 // 5 + 1, demand)
            self.publish(AddStock(sku=sku, quantity=quantity), timeout=120)

    def place(self, count: int, rate: float) -> None:
        for _ in range(count):
            order = random_order(self.rng, self.rng.choice(self.customers), declined_share=0.1)
            self.publish(order, timeout=120)
            self.placed.append(str(order.order_id))
            time.sleep(1 / rate if rate > 0 else 0)

    def unfinished(self, database: Database[Document]) -> int:
        done = database["sagas"].count_documents(
            {"_id": {"$in": self.placed}, "status": {"$in": sorted(TERMINAL)}, "pending": []}
        )
        return len(self.placed) - done


def say(text: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_batch(stack: Stack, workload: Workload, fault: Fault, orders: int, rate: float) -> Outcome:
    """``orders`` orders with ``fault`` striking halfway; then wait and check everything."""
    outcome = Outcome(fault.label, orders)
    workload.placed = []
    workload.restock(orders)
    workload.place(orders // 2, rate)
    say(f"{fault.label}: striking")
    striker = threading.Thread(target=strike, args=(stack, fault))
    striker.start()
    workload.place(orders - orders // 2, rate)
    striker.join()
    ended = time.monotonic()
    database = stack.database()
    deadline = ended + 240 + orders
    while workload.unfinished(database) and time.monotonic() < deadline:
        time.sleep(0.5)
    outcome.recovery_seconds = round(time.monotonic() - ended, 1)
    say(f"{fault.label}: {workload.unfinished(database)} unfinished, {outcome.recovery_seconds} s")
    if fault.kind == "soak":  # back to a worker without injected faults
        stack.kill(stack.worker)
        stack.start_worker()
    check(stack, workload, database, outcome)
    return outcome


def settled(database: Database[Document], timeout: float = 60.0) -> bool:
    """Until every commit is receipted or re-sent (nothing undispatched past the relay's
    watermark) and every read model agrees with the log, bounded: the projections may trail
    the sagas by a moment (what is left is reported, not waited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        undispatched = EventStore(database).count_undispatched()
        if not undispatched and verify_read_models(database).consistent:
            return True
        time.sleep(0.5)
    return False


def check(stack: Stack, workload: Workload, database: Database[Document], out: Outcome) -> None:
    out.unfinished = workload.unfinished(database)
    started = time.monotonic()
    if not settled(database):
        out.notes.append("commits undispatched or read models differing after 60 s")
    report = check_fulfilment(database)
    summary = report.summary()
    placed = set(workload.placed)
    sagas = database["sagas"].find({"_id": {"$in": sorted(placed)}}, {"status": 1})
    states = [s["status"] for s in sagas]
    out.confirmed = states.count("completed")
    out.cancelled = states.count("cancelled")
    out.invariants = report.holds
    out.notes += [str(v) for v in summary.get("violations", [])][:5]
    verified = verify_read_models(database)
    out.consistent = verified.consistent
    out.notes += verified.differences[:5]
    out.dead_letters = database["dead_letters"].count_documents({"state": DEAD})
    out.parked_streams = len(parked_streams(database))
    out.status_exit, shown = stack.status()
    out.notes += [str(a) for a in shown.get("attention", [])] + list(
        filter(None, [shown.get("error")])
    )
    say(f"{out.fault}: checked in {time.monotonic() - started:.1f} s")


def run_schedule(
    stack: Stack, schedule: list[Fault], orders: int, rate: float = 20.0
) -> list[Outcome]:
    """Each fault of ``schedule`` on a batch of ``orders`` orders, in turn."""
    workload = Workload(stack)
    try:
        return [run_batch(stack, workload, fault, orders, rate) for fault in schedule]
    finally:
        workload.runtime.broker.close()


def table(outcomes: list[Outcome]) -> str:
    """The results as a Markdown table."""
    rows = [
        "| fault | orders | confirmed / cancelled | invariants | read models | dead letters "
        "| parked | status | recovery (s) |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | --- | ---: |",
    ]
    for o in outcomes:
        status = "healthy" if o.status_exit == 0 else f"exit {o.status_exit}"
        rows.append(
            f"| {o.fault} | {o.orders} | {o.confirmed} / {o.cancelled} "
            f"| {'hold' if o.invariants else 'BROKEN'} "
            f"| {'consistent' if o.consistent else 'DIFFER'} | {o.dead_letters} "
            f"| {o.parked_streams} | {status} | {o.recovery_seconds} |"
        )
    return "\n".join(rows)


def as_json(outcomes: list[Outcome]) -> str:
    return json.dumps([asdict(o) | {"green": o.green} for o in outcomes], indent=2)
