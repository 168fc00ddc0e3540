"""The ``customer_profile`` read model: a customer with figures across all their orders.

It follows two kinds of stream, into one collection: the customer's own (position
``_version`` in the profile) and each order's, into a document per order (position
``_order``: the gate of ``readstore.linked``). Every order event changes the profile too,
in the same bulk write: the counts, the total spent, the last order time and the few most
recent orders, guarded by the order's entry under ``_open`` (its last version applied
there), dropped once the order is confirmed or cancelled. Each event costs the same
whatever the customer's history, and the profile does not grow with it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from messages import Event
from messages.customers import CustomerRegistered, customer_stream
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from readstore.consistency import Answer, ConsistencyToken, wait_until
from readstore.db import Document, get_database
from readstore.follows import Follow, Place
from readstore.linked import Linked, Totals
from readstore.mongo import from_mongo, money
from readstore.projection import Update
from readstore.steps import Step

CUSTOMERS = Follow("customer")
ORDERS = Follow("order", "_order")
#: How many of the customer's latest orders the profile carries.
RECENT = 5
RECENT_ORDER = {"placed_at": -1, "order_id": -1}
ORDER_EVENTS = (OrderPlaced, OrderConfirmed, OrderCancelled)
ENDS = (OrderConfirmed, OrderCancelled)
ZERO = Decimal("0.00")


class CustomerProfiles(Linked):
    name = "customer_profile"
    collection_name = "customer_profile"
    handles: ClassVar[tuple[type[Event], ...]] = (
        CustomerRegistered,
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
    )
    follows = (CUSTOMERS, ORDERS)
    linked = ORDERS
    entries = "_open"

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

    def totals(self, event: Event) -> Totals:
        if isinstance(event, ORDER_EVENTS):
            return [(str(event.customer_id), figures(event))]
        return []

    def final(self, event: Event) -> bool:
        return isinstance(event, ENDS)

    def _drops(self, event: Event | None, where: Place) -> list[Step]:
        """The order's row among the recent ones (if still there) takes its final status in
        the write that drops the order's entry: one document written, not two."""
        drops = super()._drops(event, where)
        if not isinstance(event, ENDS):
            return drops
        status = "confirmed" if isinstance(event, OrderConfirmed) else "cancelled"
        row = ({"row.order_id": str(event.order_id)},)
        recent = {"recent_orders.$[row].status": status}
        return [replace(s, update={**s.update, "$set": recent}, array_filters=row) for s in drops]


def figures(event: Event) -> Update:
    """What an order event adds to its customer's figures."""
    match event:
        case OrderPlaced():
            row = {
                "order_id": str(event.order_id),
                "status": "pending",
                "total": money(event.total),
                "placed_at": event.occurred_at,
            }
            recent = {"$each": [row], "$sort": RECENT_ORDER, "$slice": RECENT}
            zero = {"orders_confirmed": 0, "orders_cancelled": 0, "total_spent": money(ZERO)}
            return {
                "$inc": {"orders_placed": 1, **zero},
                "$max": {"last_order_at": event.occurred_at},
                "$push": {"recent_orders": recent},
            }
        case OrderConfirmed():
            return {"$inc": {"orders_confirmed": 1, "total_spent": money(event.total)}}
        case OrderCancelled():
            return {"$inc": {"orders_cancelled": 1}}
    return {}


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
    if token.stream_id == customer_stream(customer_id):
        return doc is not None and int(doc.get("_version", 0)) >= token.version
    if not token.stream_id.startswith("order-"):
        return True
    order_id = token.stream_id.removeprefix("order-")
    collection = get_database()[CustomerProfiles.collection_name]
    order = collection.find_one({"_id": order_id}, {ORDERS.position: 1, "status": 1})
    if order is None or int(order.get(ORDERS.position, 0)) < token.version or doc is None:
        return False
    entry = doc.get(CustomerProfiles.entries, {}).get(order_id)
    if entry is None:  # dropped once the order ended; not yet there after its first event
        return order.get("status") in ("confirmed", "cancelled")
    return int(entry) >= token.version


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
