"""Folds of the stored event log for the audit: one order's facts, one SKU's stock.

They read commits as stored (no decoding into models, so a pass over a large store stays
cheap) and only the event types whose stored form has one version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from readstore.db import Document

ZERO = Decimal("0")


def _lines(data: Document) -> Counter[str]:
    found: Counter[str] = Counter()
    for line in data.get("lines", ()):
        found[line["sku"]] += int(line["quantity"])
    return found


@dataclass
class OrderFacts:
    """What the log says happened to one order, across its order, payment and stock streams."""

    order_id: str
    customer_id: str | None = None
    total: Decimal | None = None
    confirmed: bool = False
    cancelled: bool = False
    charges: int = 0
    charged: Decimal = ZERO
    refunded: Decimal = ZERO
    reserved: Counter[str] = field(default_factory=Counter)
    committed: Counter[str] = field(default_factory=Counter)
    released: bool = False
    placed_at: datetime | None = None
    last_at: datetime | None = None
    #: The order stream's version (the ``order_summary`` document's position).
    version: int = 0

    @property
    def placed(self) -> bool:
        return self.total is not None

    @property
    def kept(self) -> Decimal:
        """Money charged and not refunded."""
        return self.charged - self.refunded

    def add(self, commit: Document) -> None:
        at = commit["committed_at"]
        self.last_at = max(self.last_at or at, at)
        if commit["stream_id"].startswith("order-"):
            self.version = max(self.version, commit["version"])
        for event in commit["events"]:
            self._apply(event["type"], event.get("data", {}), at)

    def _apply(self, kind: str, data: Document, at: datetime) -> None:
        match kind:
            case "OrderPlaced":
                self.total, self.placed_at = Decimal(str(data["total"])), at
                self.customer_id = str(data["customer_id"])
            case "OrderConfirmed":
                self.confirmed = True
            case "OrderCancelled":
                self.cancelled = True
            case "PaymentCharged":
                self.charges += 1
                self.charged += Decimal(str(data["amount"]))
            case "PaymentRefunded":
                self.refunded += Decimal(str(data["amount"]))
            case "StockReserved":
                self.reserved = _lines(data)
            case "StockCommitted":
                self.committed += _lines(data)
            case "StockReleased":
                self.released = True


def order_problems(facts: OrderFacts, *, saga: bool) -> list[tuple[str, str]]:
    """``(invariant, detail)`` for each rule a settled order breaks; ``saga``: orders go
    through the fulfilment saga (else they are confirmed upstream and nothing is charged)."""
    name = f"order {facts.order_id}"
    if not saga:
        both = facts.confirmed and facts.cancelled
        return [("orders_terminal", f"{name}: both confirmed and cancelled")] if both else []
    found: list[tuple[str, str]] = []
    if not facts.placed:
        found.append(("orders_terminal", f"{name}: has events but was never placed"))
    elif not (facts.confirmed or facts.cancelled):
        found.append(("orders_terminal", f"{name}: neither confirmed nor cancelled"))
    elif facts.confirmed and facts.cancelled:
        found.append(("orders_terminal", f"{name}: both confirmed and cancelled"))
    found += _money_problems(facts, name)
    found += _stock_problems(facts, name)
    return found


def _money_problems(facts: OrderFacts, name: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if facts.cancelled and not facts.confirmed and facts.kept > 0:
        found.append(("no_charge_kept_for_cancelled", f"{name}: cancelled, {facts.kept} kept"))
    if facts.charges > 1:
        found.append(("money_conserved", f"{name}: charged {facts.charges} times"))
    if facts.kept < 0:
        found.append(("money_conserved", f"{name}: refunded {-facts.kept} more than charged"))
    if facts.confirmed and facts.total is not None and facts.kept != facts.total:
        found.append(("money_conserved", f"{name}: confirmed at {facts.total}, {facts.kept} kept"))
    return found


def _stock_problems(facts: OrderFacts, name: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if facts.confirmed and not facts.cancelled and facts.committed != facts.reserved:
        found.append(
            (
                "stock_conserved",
                f"{name}: confirmed, reserved {dict(facts.reserved)}, "
                f"committed {dict(facts.committed)}",
            )
        )
    if facts.cancelled and facts.committed:
        found.append(("stock_conserved", f"{name}: cancelled, stock committed"))
    if facts.cancelled and facts.reserved and not facts.released:
        found.append(("stock_conserved", f"{name}: cancelled, reserved stock never released"))
    return found


@dataclass
class SkuStock:
    """One SKU's stream folded: where the audit got to, and the lowest availability seen."""

    sku: str
    version: int = 0
    added: int = 0
    held: int = 0
    released: int = 0
    lowest_available: int = 0
    last_at: datetime | None = None

    @property
    def available(self) -> int:
        return self.added - self.held + self.released

    def add(self, commit: Document) -> None:
        self.version, self.last_at = commit["version"], commit["committed_at"]
        for event in commit["events"]:
            quantity = int(event.get("data", {}).get("quantity", 0))
            match event["type"]:
                case "StockAdded":
                    self.added += quantity
                case "StockHeld":
                    self.held += quantity
                case "StockHoldReleased":
                    self.released += quantity
            self.lowest_available = min(self.lowest_available, self.available)

    def checkpoint(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "sku"}
