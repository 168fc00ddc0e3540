"""The read models an operator acts on, held against the audit's fold of the log, in memory.

Each collection is read once, in bulk (or, for a slice of orders, by its ids), and every
document compared with what the log says: an order's summary (status, customer, total, and
its position in the order stream) and a customer's order figures (placed, confirmed,
cancelled, spent). The inventory levels are compared in ``audit_scan.sku_problems``. Every
field of every projection is compared by ``sagaworks projections verify`` (a full rebuild
in memory through the projections' own code: ``audit --exact-read-models``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128
from pymongo.database import Database

from readstore.customers import ORDERS
from readstore.db import Document
from workers.ops.folds import ZERO, OrderFacts

Findings = list[tuple[str, str]]
SUMMARIES = "order_summary"
PROFILES = "customer_profile"
INVARIANT = "read_models_match_log"
#: The fields of an order summary compared, in the order of ``summary_problems``'s tuple.
FIELDS = {"status": 1, "customer_id": 1, "total": 1, "_version": 1}
FIGURES = {"orders_placed": 1, "orders_confirmed": 1, "orders_cancelled": 1, "total_spent": 1}


def _number(value: Any) -> Any:
    return value.to_decimal() if isinstance(value, Decimal128) else value


def _status(order: OrderFacts) -> str:
    return "confirmed" if order.confirmed else "cancelled" if order.cancelled else "pending"


def summaries(database: Database[Document], ids: Iterable[str] | None = None) -> dict[str, Any]:
    """The order summaries (of ``ids``, or all), the fields compared, in one read."""
    query = {} if ids is None else {"_id": {"$in": list(ids)}}
    found = database[SUMMARIES].find(query, FIELDS).batch_size(10_000)
    return {d["_id"]: d for d in found}


def summary_problems(order: OrderFacts, doc: Document | None) -> Findings:
    """A settled order's summary against its facts."""
    name = f"order_summary {order.order_id}"
    if not order.placed:
        return []
    if doc is None:
        return [(INVARIANT, f"{name}: missing from the read model")]
    want = (_status(order), order.customer_id, order.total, order.version)
    have = tuple(_number(doc.get(k)) for k in FIELDS)
    return [(INVARIANT, f"{name}: {have}, log says {want}")] if have != want else []


def orphan_summaries(found: dict[str, Document]) -> Findings:
    return [
        (INVARIANT, f"order_summary {order_id}: in the read model, not in the log")
        for order_id in sorted(found)
    ]


class CustomerFigures:
    """What the log says each customer's order figures are, order by order; a customer with
    an order in flight is left out (its figures may lag by design)."""

    def __init__(self) -> None:
        self.want: dict[str, tuple[int, int, int, Decimal]] = {}
        self.busy: set[str] = set()

    def add(self, order: OrderFacts, *, settled: bool) -> None:
        customer = order.customer_id
        if customer is None or not order.placed:
            return
        if not settled:
            self.busy.add(customer)
        placed, confirmed, cancelled, spent = self.want.get(customer, (0, 0, 0, ZERO))
        kept = order.total if order.confirmed and order.total is not None else ZERO
        self.want[customer] = (
            placed + 1,
            confirmed + order.confirmed,
            cancelled + (order.cancelled and not order.confirmed),
            spent + kept,
        )

    def problems(self, database: Database[Document]) -> Findings:
        """Every customer profile, read once, against the figures."""
        want, found = dict(self.want), []
        profiles = {ORDERS.position: {"$exists": False}}  # not the per-order documents
        for doc in database[PROFILES].find(profiles, FIGURES).batch_size(10_000):
            wanted = want.pop(doc["_id"], (0, 0, 0, ZERO))
            have = tuple(_number(doc.get(k, 0)) for k in FIGURES)
            if doc["_id"] not in self.busy and have != wanted:
                found.append(
                    (INVARIANT, f"customer_profile {doc['_id']}: {have}, log says {wanted}")
                )
        missing = sorted(set(want) - self.busy)
        return found + [
            (INVARIANT, f"customer_profile {c}: missing from the read model") for c in missing
        ]
