"""The audit's time on a large store: ``python -m workers.workloads.bench_audit --orders 100000``.

It writes, straight into a file-backed embedded SecantusDB, what the service would have
written for that many finished orders (85% confirmed, 10% declined and released, 5% out of
stock): the commits of the order, payment, reservation and SKU streams, one saga per order,
and the read models, with the service's indexes. Then it times ``audit(full=True)``
(everything, one read of the log) and bounded runs one after the other
(``budget_seconds``: each resumes where the last stopped) until every order was covered
once, and says what each read and covered. ``--store PATH`` keeps the generated store
there and reuses it when it exists (generating 100,000 orders takes minutes).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bson.decimal128 import Decimal128
from pymongo.database import Database

from messages import Event, encode
from messages.inventory import (
    StockAdded,
    StockCommitted,
    StockHeld,
    StockHoldReleased,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from messages.orders import Address, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced
from messages.payments import PaymentCharged, PaymentDeclined
from readstore.db import Document, connect
from readstore.eventlog import commit_id
from workers.boot import ensure_indexes, load_actor_modules
from workers.ops.audit import Report, audit
from workers.ops.audit_log import BATCH
from workers.runtime.embedded import EmbeddedMongo

SKUS = [f"AUDIT-{i:02d}" for i in range(20)]
CUSTOMERS = 5000
PRICE = Decimal("4.50")


class Writer:
    """Buffers commits and documents, and writes them in bulk."""

    def __init__(self, database: Database[Document]) -> None:
        self.database = database
        self.buffers: dict[str, list[Document]] = {}
        self.versions: Counter[str] = Counter()
        self.at = datetime.now(UTC) - timedelta(days=1)

    def commit(self, stream_id: str, *events: Event) -> None:
        first = self.versions[stream_id] + 1
        self.versions[stream_id] += len(events)
        self.at += timedelta(milliseconds=10)
        wire = [encode(event) for event in events]
        doc = {"_id": commit_id(stream_id, first), "stream_id": stream_id, "version_from": first}
        doc |= {"version": self.versions[stream_id], "events": wire, "committed_at": self.at}
        self.add("commits", {**doc, "dispatched": True})

    def add(self, collection: str, doc: Document) -> None:
        buffer = self.buffers.setdefault(collection, [])
        buffer.append(doc)
        if len(buffer) >= 2000:
            self.flush(collection)

    def flush(self, collection: str | None = None) -> None:
        for name in [collection] if collection else list(self.buffers):
            if self.buffers.get(name):
                self.database[name].insert_many(self.buffers[name], ordered=False)
                self.buffers[name] = []


ADDRESS = Address(name="A", street="1 St", city="C", postal_code="1", country="US")


@dataclass
class Profile:
    placed: int = 0
    confirmed: int = 0
    cancelled: int = 0
    spent: Decimal = Decimal("0")


def generate(database: Database[Document], orders: int, seed: int = 14) -> None:
    """``orders`` finished orders, as the service leaves them."""
    rng, out = random.Random(seed), Writer(database)
    stock = {sku: Counter[str]() for sku in SKUS}
    for sku in SKUS:
        out.commit(f"sku-{sku}", StockAdded(sku=sku, quantity=orders))
        stock[sku]["added"] = orders
    profiles = {uuid.uuid4(): Profile() for _ in range(CUSTOMERS)}
    customers = list(profiles)
    for _ in range(orders):
        fate = rng.choices(["confirmed", "declined", "short"], [85, 10, 5])[0]
        lines = {sku: rng.randint(1, 2) for sku in rng.sample(SKUS, rng.randint(1, 2))}
        customer = rng.choice(customers)
        total = _order(out, uuid.uuid4(), customer, lines, fate, stock)
        _count(profiles[customer], fate, total)
    _read_models(out, stock, profiles)
    out.flush()


def _count(profile: Profile, fate: str, total: Decimal) -> None:
    profile.placed += 1
    if fate == "confirmed":
        profile.confirmed += 1
        profile.spent += total
    else:
        profile.cancelled += 1


def _order(  # noqa: PLR0917 -- one order's whole story, written out in order
    out: Writer,
    order_id: uuid.UUID,
    customer: uuid.UUID,
    lines: dict[str, int],
    fate: str,
    stock: dict[str, Counter[str]],
) -> Decimal:
    total = PRICE * sum(lines.values())
    held = tuple(StockLine(sku=s, quantity=q) for s, q in sorted(lines.items()))
    ids: dict[str, Any] = {"order_id": order_id, "customer_id": customer}
    order_lines = tuple(OrderLine(sku=s, quantity=q, unit_price=PRICE) for s, q in lines.items())
    placed = OrderPlaced(
        **ids, customer_name="C", lines=order_lines, shipping_address=ADDRESS, total=total
    )
    out.commit(f"order-{order_id}", placed)
    reservation = f"reservation-{order_id}"
    if fate == "short":
        out.commit(reservation, StockReservationFailed(order_id=order_id, short=(held[0].sku,)))
    else:
        for line in held:
            out.commit(f"sku-{line.sku}", StockHeld(order_id=order_id, **line.model_dump()))
            stock[line.sku]["held"] += line.quantity
        out.commit(reservation, StockReserved(order_id=order_id, lines=held))
    _settle(out, order_id, fate, total, held, stock)
    ending: Event = (
        OrderConfirmed(**ids, total=total)
        if fate == "confirmed"
        else OrderCancelled(**ids, total=total, reason=fate)
    )
    out.commit(f"order-{order_id}", ending)
    _saga_and_summary(out, order_id, customer, fate, total)
    return total


def _settle(  # noqa: PLR0917 -- the order's payment and stock, as _order's helper
    out: Writer,
    order_id: uuid.UUID,
    fate: str,
    total: Decimal,
    held: tuple[StockLine, ...],
    stock: dict[str, Counter[str]],
) -> None:
    payment, reservation = f"payment-{order_id}", f"reservation-{order_id}"
    if fate == "confirmed":
        out.commit(payment, PaymentCharged(order_id=order_id, amount=total, reference="r"))
        out.commit(reservation, StockCommitted(order_id=order_id, lines=held))
        for line in held:
            stock[line.sku]["committed"] += line.quantity
    if fate == "declined":
        out.commit(payment, PaymentDeclined(order_id=order_id, amount=total, reason="declined"))
        out.commit(reservation, StockReleased(order_id=order_id, lines=held, reason="declined"))
        for line in held:
            release = StockHoldReleased(order_id=order_id, **line.model_dump())
            out.commit(f"sku-{line.sku}", release)
            stock[line.sku]["released"] += line.quantity


def _saga_and_summary(
    out: Writer, order_id: uuid.UUID, customer: uuid.UUID, fate: str, total: Decimal
) -> None:
    status = "completed" if fate == "confirmed" else "cancelled"
    history = [{"at": out.at, "from": None, "to": "reserving", "sent": ["ReserveStock"]}] * 4
    saga: Document = {"_id": str(order_id), "saga": "fulfilment", "status": status}
    saga["deadline"] = None
    saga |= {"pending": [], "updated_at": out.at, "history": history, "state": {"total": 1}}
    out.add("sagas", saga)
    summary = {"_id": str(order_id), "customer_id": str(customer), "total": Decimal128(total)}
    summary |= {"status": "confirmed" if fate == "confirmed" else "cancelled", "_version": 2}
    out.add("order_summary", summary)


def _read_models(
    out: Writer, stock: dict[str, Counter[str]], profiles: dict[uuid.UUID, Profile]
) -> None:
    for sku, figures in stock.items():
        level = {"_id": sku, **figures, "_version": out.versions[f"sku-{sku}"]}
        out.add("inventory_levels", level)
    for customer, p in profiles.items():
        doc = {"_id": str(customer), "orders_placed": p.placed, "orders_confirmed": p.confirmed}
        doc |= {"orders_cancelled": p.cancelled, "total_spent": Decimal128(p.spent)}
        out.add("customer_profile", doc)


def run(orders: int, budget: float, store_path: str | None = None) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="sagaworks-audit-bench-")
    path = store_path or f"{home}/store"
    fresh = not Path(path).exists()
    store = EmbeddedMongo.start(path, sync_on_commit=False)
    try:
        database = connect(store.url, "audit_bench")
        load_actor_modules()
        ensure_indexes(database)  # the service's indexes (kept: the audit's slices use them)
        report: dict[str, Any] = {"orders": orders, "budget_seconds": budget}
        if fresh:
            started = time.monotonic()
            generate(database, orders)
            report["generated_seconds"] = _since(started)
        report["commits"] = database["commits"].estimated_document_count()
        report["bare_scan"] = _bare_scan(database)
        report["full"] = _summary(audit(database, full=True))
        report["bounded"] = _cycle(database, budget)
        report["store"] = "embedded SecantusDB, file-backed"
        return report
    finally:
        store.stop()
        shutil.rmtree(home, ignore_errors=True)


def _bare_scan(database: Database[Document]) -> dict[str, float]:
    """The store's read rate: every commit read, as the full audit reads them, and dropped."""
    started = time.monotonic()
    read = sum(1 for _ in database["commits"].find({}).batch_size(BATCH))
    seconds = time.monotonic() - started
    return {"seconds": round(seconds, 1), "commits_per_second": round(read / seconds)}


def _cycle(database: Database[Document], budget: float) -> list[dict[str, Any]]:
    """Bounded runs until one ends the cycle (it covered the last slice of the orders)."""
    runs: list[dict[str, Any]] = []
    while not runs or any(n.startswith("orders after") for n in runs[-1]["not_reached"]):
        runs.append(_summary(audit(database, budget_seconds=budget)))
    return runs


def _summary(result: Report) -> dict[str, Any]:
    return {
        "seconds": round(result.elapsed_seconds, 1),
        "checked": dict(result.checked),
        "not_reached": result.not_reached,
        "broken": result.broken,
        "exit_code": result.exit_code,
    }


def _since(started: float) -> float:
    return round(time.monotonic() - started, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.workloads.bench_audit")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per bounded run")
    parser.add_argument("--store", help="keep the generated store here (reused if it exists)")
    args = parser.parse_args(argv)
    json.dump(run(args.orders, args.budget, args.store), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
