"""The ``customer_profile`` read model: a customer with figures across all their orders.

It follows two kinds of stream: the customer's own (position ``_version`` in the profile)
and each order's, into a document per order in ``customer_profile_orders`` (position
``_version``; indexed by customer). The profile's order figures and its few most recent
orders are *recomputed* from those per-order documents after each of them changes, and
written with ``$set`` only if the recomputation saw more applied events than the one
stored (``_applied``, the sum of the order positions it read): a redelivery changes
nothing, a slower recomputation never overwrites a newer one, and the profile's size does
not grow with the customer's history.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from pymongo import DESCENDING

from messages import Event
from messages.customers import CustomerRegistered, customer_stream
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from readstore.consistency import Answer, ConsistencyToken, wait_until
from readstore.db import Document, get_database
from readstore.follows import Follow
from readstore.mongo import from_mongo, money
from readstore.projection import Projection, Update

CUSTOMERS = Follow("customer")
ORDERS = Follow("order", collection="orders")
#: How many of the customer's latest orders the profile carries.
RECENT = 5
COUNTED = ("orders_placed", "orders_confirmed", "orders_cancelled")
ORDER_EVENTS = (OrderPlaced, OrderConfirmed, OrderCancelled)


class CustomerProfiles(Projection):
    name = "customer_profile"
    collection_name = "customer_profile"
    handles: ClassVar[tuple[type[Event], ...]] = (
        CustomerRegistered,
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
    )
    follows = (CUSTOMERS, ORDERS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stale: set[str] = set()

    def change(self, event: Event) -> Update:
        match event:
            case CustomerRegistered():
                return {
                    "$set": {
                        "name": event.full_name,
                        "email": event.email,
                        "marketing_opt_in": event.marketing_opt_in,
                        "registered_at": event.occurred_at,
                    }
                }
            case OrderPlaced():
                placed = {"customer_id": str(event.customer_id), "placed_at": event.occurred_at}
                return {"$set": {**placed, "status": "pending", "total": money(event.total)}}
            case OrderConfirmed():
                return {"$set": {"customer_id": str(event.customer_id), "status": "confirmed"}}
            case OrderCancelled():
                return {"$set": {"customer_id": str(event.customer_id), "status": "cancelled"}}
        return {}

    def propagate(self, event: Event) -> None:
        if isinstance(event, ORDER_EVENTS):
            self.recount(str(event.customer_id))

    def propagate_batch(self, events: Sequence[Event]) -> None:
        """Each customer's figures recomputed once for all of their orders in the batch."""
        customers = [str(e.customer_id) for e in events if isinstance(e, ORDER_EVENTS)]
        for customer_id in dict.fromkeys(customers):
            self.recount(customer_id)

    def recount(self, customer_id: str) -> None:
        """Recompute the customer's order figures from their per-order documents."""
        if self.folding:
            self._stale.add(customer_id)  # once per customer, at the end of the fold
            return
        orders = self.documents.find(self.collection_of(ORDERS), "customer_id", customer_id)
        self._store(customer_id, summarise(orders))

    def _store(self, customer_id: str, figures: dict[str, Any]) -> None:
        # Unset, or fewer applied events; beside ``_id``, so the write stays a point lookup.
        query = {"_id": customer_id, "_applied": {"$not": {"$gte": figures["_applied"]}}}
        self.documents.update(self.collection.name, query, {"$set": figures}, upsert=True)

    def finish_fold(self) -> None:
        by_customer: dict[str, list[Document]] = defaultdict(list)
        for doc in self.documents.scan(self.collection_of(ORDERS)):
            by_customer[doc["customer_id"]].append(doc)
        for customer_id in sorted(self._stale):
            self._store(customer_id, summarise(by_customer[customer_id]))
        self._stale = set()

    def indexes(self) -> None:
        orders = self.database[self.collection_of(ORDERS)]
        orders.create_index([("customer_id", 1), ("placed_at", DESCENDING)])


def summarise(orders: Iterable[Document]) -> dict[str, Any]:
    """A customer's order figures and latest orders, from their per-order documents."""
    counts = dict.fromkeys(COUNTED, 0)
    spent, applied, last = Decimal("0.00"), 0, None
    rows = []
    for doc in orders:
        status, placed_at = doc.get("status"), doc.get("placed_at")
        applied += int(doc.get("_version", 0))
        if placed_at is None:
            continue  # only a later event applied so far: counted once it is placed
        counts["orders_placed"] += 1
        counts["orders_confirmed"] += status == "confirmed"
        counts["orders_cancelled"] += status == "cancelled"
        total = from_mongo(doc.get("total"))
        spent += total if status == "confirmed" else 0
        last = placed_at if last is None else max(last, placed_at)
        row = {"order_id": doc["_id"], "status": status, "total": money(total)}
        rows.append({**row, "placed_at": placed_at})
    rows.sort(key=lambda r: (r["placed_at"], r["order_id"]), reverse=True)
    return {
        **counts,
        "total_spent": money(spent),
        "last_order_at": last,
        "recent_orders": rows[:RECENT],
        "_applied": applied,
    }


class RecentOrder(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: UUID
    status: str
    total: Decimal
    placed_at: datetime


class CustomerProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: UUID
    name: str | None = None
    email: str | None = None
    marketing_opt_in: bool = False
    registered_at: datetime | None = None
    orders_placed: int = 0
    orders_confirmed: int = 0
    orders_cancelled: int = 0
    total_spent: Decimal = Decimal("0.00")
    last_order_at: datetime | None = None
    recent_orders: tuple[RecentOrder, ...] = ()

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> CustomerProfile:
        fields = from_mongo({k: v for k, v in doc.items() if k in cls.model_fields})
        return cls(customer_id=doc["_id"], **fields)


def _reached(customer_id: UUID, token: ConsistencyToken, doc: Document | None) -> bool:
    """Whether the profile ``doc`` holds ``token``'s write (the customer's or an order's)."""
    database = get_database()
    if token.stream_id == customer_stream(customer_id):
        return doc is not None and int(doc.get("_version", 0)) >= token.version
    if not token.stream_id.startswith("order-"):
        return True
    orders = database[f"{CustomerProfiles.collection_name}_{ORDERS.collection}"]
    order = orders.find_one({"_id": token.stream_id.removeprefix("order-")}, {"_version": 1})
    if order is None or int(order.get("_version", 0)) < token.version or doc is None:
        return False
    mine = orders.find({"customer_id": str(customer_id)}, {"_version": 1})
    return int(doc.get("_applied", 0)) >= sum(int(o.get("_version", 0)) for o in mine)


def get_customer_profile(
    customer_id: UUID, token: ConsistencyToken | None = None, timeout: float = 5.0
) -> Answer[CustomerProfile | None]:
    """The customer's profile; with ``token`` (the customer's or one of their orders'), wait."""
    collection = get_database()[CustomerProfiles.collection_name]
    found: list[dict[str, Any] | None] = [None]

    def reached() -> bool:
        found[0] = collection.find_one({"_id": str(customer_id)})
        return token is None or _reached(customer_id, token, found[0])

    fresh = wait_until(reached, timeout if token else 0)
    doc = found[0]
    return Answer(CustomerProfile.from_document(doc) if doc else None, stale=not fresh)
