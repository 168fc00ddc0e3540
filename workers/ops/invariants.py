"""The fulfilment invariants, recomputed from the event store and held against the read models.

Stock is conserved per SKU (on hand = added - committed, nothing left reserved, available
never negative at any version), money is conserved (charged - refunded = the confirmed
orders' totals), no order is charged twice or both confirmed and cancelled, every order is
finished and no saga is left running.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pymongo.database import Database

from messages import Event
from messages.inventory import StockAdded, StockCommitted, StockHeld, StockHoldReleased
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from messages.payments import PaymentCharged, PaymentRefunded
from readstore.db import Document
from readstore.eventlog import iter_commits
from readstore.inventory import InventoryLevel, InventoryLevels
from sagas.store import SagaStore


@dataclass
class Stock:
    added: int = 0
    held: int = 0
    released: int = 0
    committed: int = 0
    lowest_available: int = 0

    @property
    def on_hand(self) -> int:
        return self.added - self.committed

    @property
    def reserved(self) -> int:
        return self.held - self.released - self.committed


@dataclass
class Ledger:
    """What the events say happened."""

    placed: set[str] = field(default_factory=set)
    confirmed: dict[str, Decimal] = field(default_factory=dict)
    cancelled: dict[str, str] = field(default_factory=dict)
    charges: Counter[str] = field(default_factory=Counter)
    charged: Decimal = Decimal("0")
    refunded: Decimal = Decimal("0")
    stock: defaultdict[str, Stock] = field(default_factory=lambda: defaultdict(Stock))

    def add(self, event: Event) -> None:
        match event:
            case OrderPlaced():
                self.placed.add(str(event.order_id))
            case OrderConfirmed():
                self.confirmed[str(event.order_id)] = event.total
            case OrderCancelled():
                self.cancelled[str(event.order_id)] = event.reason
            case PaymentCharged():
                self.charges[str(event.order_id)] += 1
                self.charged += event.amount
            case PaymentRefunded():
                self.refunded += event.amount
            case StockAdded():
                self.stock[event.sku].added += event.quantity
            case StockHeld():
                sku = self.stock[event.sku]
                sku.held += event.quantity
                sku.lowest_available = min(
                    sku.lowest_available, sku.added - sku.held + sku.released
                )
            case StockHoldReleased():
                self.stock[event.sku].released += event.quantity
            case StockCommitted():
                for line in event.lines:
                    self.stock[line.sku].committed += line.quantity


@dataclass
class Report:
    ledger: Ledger
    sagas: dict[str, int]
    running: int
    compensations: Counter[str]
    violations: list[str]

    @property
    def holds(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        ledger = self.ledger
        reasons = Counter(_reason_group(r) for r in ledger.cancelled.values())
        return {
            "orders": len(ledger.placed),
            "confirmed": len(ledger.confirmed),
            "cancelled": len(ledger.cancelled),
            "cancelled_by_reason": dict(reasons.most_common()),
            "compensations": dict(self.compensations),
            "sagas_by_state": self.sagas,
            "sagas_running": self.running,
            "charged": str(ledger.charged),
            "refunded": str(ledger.refunded),
            "confirmed_total": str(sum(ledger.confirmed.values(), Decimal("0"))),
            "invariants_hold": self.holds,
            "violations": self.violations[:20],
        }


def _reason_group(reason: str) -> str:
    return reason.split(":", 1)[0]


def check_fulfilment(database: Database[Document]) -> Report:
    """Every invariant of the fulfilment saga, over the whole store."""
    ledger = Ledger()
    for commit in iter_commits(database):
        for event in commit.events:
            ledger.add(event)
    sagas = SagaStore(database)
    compensations: Counter[str] = Counter()
    for doc in sagas.collection.find({}, {"state.compensations": 1}):
        compensations.update(doc["state"]["compensations"])
    running = sagas.count_running()
    violations = [
        *_order_violations(ledger),
        *_money_violations(ledger),
        *_stock_violations(ledger, database),
    ]
    if running:
        violations.append(f"{running} saga(s) still running or with messages unsent")
    return Report(ledger, sagas.count_by_status(), running, compensations, violations)


def _order_violations(ledger: Ledger) -> list[str]:
    found = [f"order {o}: charged {n} times" for o, n in ledger.charges.items() if n > 1]
    found += [
        f"order {o}: confirmed and cancelled" for o in set(ledger.confirmed) & set(ledger.cancelled)
    ]
    unfinished = ledger.placed - set(ledger.confirmed) - set(ledger.cancelled)
    found += [f"order {o}: neither confirmed nor cancelled" for o in sorted(unfinished)]
    return found


def _money_violations(ledger: Ledger) -> list[str]:
    confirmed = sum(ledger.confirmed.values(), Decimal("0"))
    if ledger.charged - ledger.refunded != confirmed:
        return [
            f"money: charged {ledger.charged} - refunded {ledger.refunded} "
            f"!= confirmed totals {confirmed}"
        ]
    return []


def _stock_violations(ledger: Ledger, database: Database[Document]) -> list[str]:
    levels = {
        d["_id"]: InventoryLevel.from_document(d)
        for d in database[InventoryLevels.collection_name].find({}, {"_committed": 0})
    }
    found: list[str] = []
    for name, sku in sorted(ledger.stock.items()):
        if sku.reserved != 0:
            found.append(f"sku {name}: {sku.reserved} still reserved")
        if sku.lowest_available < 0:
            found.append(f"sku {name}: available went down to {sku.lowest_available}")
        level = levels.get(name)
        seen = (level.on_hand, level.reserved) if level else None
        if seen != (sku.on_hand, sku.reserved):
            found.append(
                f"sku {name}: read model says {seen}, events say {(sku.on_hand, sku.reserved)}"
            )
    return found
