"""The audit's checks of orders and SKUs: from the whole log read once, or in bounded steps.

Bounded, order ids (UUIDs, spread evenly) are cut in 256 slices by their first two hex
digits: a slice's commits are three ranges of the commits' ``(stream_id, version)`` index
(the ``order-``, ``payment-`` and ``reservation-`` streams), read unsorted; its sagas and
order summaries are read by id. A SKU's commits after version ``v`` are one more range.
(No ``sort`` + ``limit`` over a large range, and no ``_id`` range: SecantusDB sorts every
match in memory before the limit, and scans the collection for an ``_id`` range.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pymongo.database import Database

from readstore.db import Document
from readstore.eventlog import commits
from readstore.inventory import BOOKKEEPING_HIDDEN, RESERVATIONS, InventoryLevels
from workers.ops import audit_models as models
from workers.ops.audit_log import SAGA_FIELDS, Log, read_sagas
from workers.ops.folds import ZERO, OrderFacts, SkuStock, order_problems

if TYPE_CHECKING:
    from workers.ops.audit import Report

AUDITS = "audits"
AUDIT_SKUS = "audit_skus"
ORDER_STREAMS = ("order-", "payment-", "reservation-")
END = "~"  # sorts after every id character, and after "@"
Findings = list[tuple[str, str]]
Spent = Callable[[], bool]


STREAM_ORDER = [("stream_id", 1), ("version", 1)]


SLICES = [f"{n:02x}" for n in range(256)]


def _streams(prefix: str, first: str) -> Document:
    """The stream ids ``prefix + id`` for ids starting with the slice prefix ``first``."""
    index = SLICES.index(first)
    upper = prefix + SLICES[index + 1] if index + 1 < len(SLICES) else prefix + END
    low = prefix if index == 0 else prefix + first
    return {"$gte": low, "$lt": upper}


class OrderPass:
    """Every order: from a whole-log ``Log`` in one go, or (``resume``) the orders with an id
    after the cursor, a slice at a time, until the budget is spent."""

    def __init__(
        self, database: Database[Document], cutoff: datetime, *, saga: bool, resume: bool
    ) -> None:
        self.database, self.cutoff, self.saga = database, cutoff, saga
        self.commits = commits(database)
        cursor = database[AUDITS].find_one({"_id": "orders"}) if resume else None
        self.cursor: str = cursor["after"] if cursor else ""
        self.complete = False
        self.in_flight = 0
        self.read = 0
        self.customers = models.CustomerFigures()
        self.committed: Counter[str] = Counter()
        self.skus: set[str] = set()
        self.money = {"charged": ZERO, "refunded": ZERO, "confirmed_total": ZERO}

    def run(self, report: Report, spent: Spent, log: Log | None = None) -> None:
        if log is not None:
            summaries = models.summaries(self.database)
            report.add(self._check(log.orders, read_sagas(self.database), summaries, report))
            report.add(models.orphan_summaries(summaries))
            self.complete = True
        else:
            self._run_slices(report, spent)
        report.checked["orders_in_flight"] += self.in_flight
        report.checked["commits_read"] += self.read
        if self.complete:
            report.money = dict(self.money)

    def _run_slices(self, report: Report, spent: Spent) -> None:
        start = SLICES.index(self.cursor) + 1 if self.cursor in SLICES else 0
        for first in SLICES[start:]:
            facts = self._facts(first)
            sagas, summaries = self._sagas(list(facts)), models.summaries(self.database, facts)
            report.add(self._check(facts, sagas, summaries, report))
            self.cursor = first
            if spent() and first != SLICES[-1]:
                report.not_reached.append(f"orders after slice {first} of {SLICES[-1]}")
                break
        else:
            self.complete, self.cursor = start == 0, ""
        self._save()

    def _facts(self, first: str) -> dict[str, OrderFacts]:
        facts: dict[str, OrderFacts] = {}
        for prefix in ORDER_STREAMS:
            query = {"stream_id": _streams(prefix, first)}
            for doc in self.commits.find(query).batch_size(1000):
                self.read += 1
                order_id = doc["stream_id"].removeprefix(prefix)
                facts.setdefault(order_id, OrderFacts(order_id)).add(doc)
        return facts

    def _sagas(self, order_ids: list[str]) -> dict[str, Document]:
        """The sagas of the slice's orders (a saga whose order left no commit at all is
        found by the deadline check while it runs)."""
        query = {"_id": {"$in": order_ids}}
        return {d["_id"]: d for d in self.database["sagas"].find(query, SAGA_FIELDS)}

    def _check(
        self,
        facts: dict[str, OrderFacts],
        sagas: dict[str, Document],
        summaries: dict[str, Document],
        report: Report,
    ) -> Findings:
        found: Findings = []
        for order_id in sorted(set(facts) | set(sagas)):
            order = facts.get(order_id) or OrderFacts(order_id)
            saga, summary = sagas.get(order_id), summaries.pop(order_id, None)
            self.committed += order.committed
            self.skus.update(order.reserved)
            settled = self._settled(order, saga)
            self.customers.add(order, settled=settled)
            if not settled:
                self.in_flight += 1
                continue
            report.checked["orders"] += 1
            found += order_problems(order, saga=self.saga)
            found += saga_problems(order, saga) if self.saga else []
            found += models.summary_problems(order, summary)
            self._count_money(order)
        return found

    def _settled(self, order: OrderFacts, saga: Document | None) -> bool:
        times = [order.last_at, saga["updated_at"] if saga else None]
        return max(t for t in times if t is not None) < self.cutoff

    def _count_money(self, order: OrderFacts) -> None:
        self.money["charged"] += order.charged
        self.money["refunded"] += order.refunded
        if order.confirmed and order.total is not None:
            self.money["confirmed_total"] += order.total

    def _save(self) -> None:
        self.database[AUDITS].update_one(
            {"_id": "orders"},
            {"$set": {"after": self.cursor, "at": datetime.now(UTC)}},
            upsert=True,
        )


def saga_problems(order: OrderFacts, saga: Document | None) -> Findings:
    """A settled order and its saga must tell the same story."""
    name = f"order {order.order_id}"
    fate = "confirmed" if order.confirmed else "cancelled" if order.cancelled else "open"
    if saga is None:
        return [("orders_terminal", f"{name}: placed, but it has no saga")] if order.placed else []
    found: Findings = []
    if saga.get("pending"):
        found.append(("sagas_terminal_by_deadline", f"saga {order.order_id}: messages never sent"))
    expected = {"completed": "confirmed", "cancelled": "cancelled"}.get(saga["status"])
    if expected and expected != fate:
        found.append(("orders_terminal", f"{name}: saga {saga['status']}, order {fate}"))
    return found


class SkuPass:
    """Every SKU's stream, folded on from where the last audit left it (all of it with no
    checkpoint, from the whole-log ``Log`` when given), against the inventory read model
    and, once every order was seen, the stock the orders committed."""

    def __init__(
        self, database: Database[Document], cutoff: datetime, *, log: Log | None = None
    ) -> None:
        self.database, self.cutoff, self.log = database, cutoff, log
        self.commits = commits(database)
        self.saved = {d["_id"]: d for d in database[AUDIT_SKUS].find()}

    def run(self, report: Report, spent: Spent, orders: OrderPass) -> None:
        collection = self.database[InventoryLevels.collection_name]
        skus = {RESERVATIONS.position: {"$exists": False}}  # not the reservations' documents
        levels = {d["_id"]: d for d in collection.find(skus, BOOKKEEPING_HIDDEN)}
        for sku in sorted(set(levels) | set(self.saved) | orders.skus):
            if spent():
                report.not_reached.append(f"skus from {sku}")
                return
            report.add(self._lost(sku))
            stock = self._fold(sku)
            report.add(sku_problems(stock, levels.get(sku), self.cutoff))
            if orders.complete:
                report.add(sku_totals(stock, levels.get(sku), orders))
            report.checked["skus"] += 1
            self._save(stock)

    def _lost(self, sku: str) -> Findings:
        """A commit an earlier audit folded that the log no longer has."""
        saved = self.saved.get(sku)
        if not saved or self._has(sku, saved["version"]):
            return []
        return [("log_intact", f"sku {sku}: version {saved['version']} was read, now it is gone")]

    def _has(self, sku: str, version: int) -> bool:
        if self.log is not None:
            return self.log.has_version(sku, version)
        return self.commits.find_one({"stream_id": f"sku-{sku}", "version": version}) is not None

    def _fold(self, sku: str) -> SkuStock:
        saved = self.saved.get(sku) if self.log is None else None
        stock = SkuStock(sku, **{k: v for k, v in saved.items() if k != "_id"}) if saved else None
        stock = stock or SkuStock(sku)
        for doc in self._after(sku, stock.version):
            stock.add(doc)
        return stock

    def _after(self, sku: str, version: int) -> Iterable[Document]:
        if self.log is not None:
            return self.log.sku_commits(sku, version)
        query = {"stream_id": f"sku-{sku}", "version": {"$gt": version}}
        return self.commits.find(query).sort(STREAM_ORDER).batch_size(1000)

    def _save(self, stock: SkuStock) -> None:
        self.database[AUDIT_SKUS].replace_one({"_id": stock.sku}, stock.checkpoint(), upsert=True)


def sku_problems(stock: SkuStock, level: Document | None, cutoff: datetime) -> Findings:
    name = f"sku {stock.sku}"
    found: Findings = []
    if stock.lowest_available < 0:
        found.append(
            ("stock_conserved", f"{name}: available went down to {stock.lowest_available}")
        )
    quiet = stock.last_at is not None and stock.last_at < cutoff
    version = level.get("_version", 0) if level else 0
    if version > stock.version:
        found.append(
            ("read_models_match_log", f"inventory {name}: at version {version}, ahead of the log")
        )
    elif quiet and (have := _available(level)) != (want := stock.available):
        # the model counts the reservations' holds, the log the SKU's: equal once settled
        found.append(("read_models_match_log", f"inventory {name}: {have} available, log {want}"))
    return found


def _available(level: Document | None) -> int:
    if level is None:
        return 0
    return int(level.get("added", 0) - level.get("held", 0) + level.get("released", 0))


def sku_totals(stock: SkuStock, level: Document | None, orders: OrderPass) -> Findings:
    """With every order seen: committed stock within what is on the shelf, nothing reserved
    once no order is in flight, and the read model's committed count equal to the orders'."""
    name, committed = f"sku {stock.sku}", orders.committed[stock.sku]
    outstanding = stock.held - stock.released - committed
    found: Findings = []
    if stock.added < committed:
        found.append(("stock_conserved", f"{name}: {committed} committed, {stock.added} added"))
    if outstanding < 0:
        found.append(
            (
                "stock_conserved",
                f"{name}: held {stock.held} - released {stock.released} - committed "
                f"{committed} = {outstanding}",
            )
        )
    elif outstanding and not orders.in_flight:
        found.append(("stock_conserved", f"{name}: {outstanding} still reserved, no order open"))
    if level is not None and not orders.in_flight and level.get("committed", 0) != committed:
        found.append(
            (
                "read_models_match_log",
                f"inventory {name}: committed {level.get('committed', 0)}, log says {committed}",
            )
        )
    return found
