"""The ``order_summary`` read model and its queries: one document per order."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, computed_field
from pymongo import DESCENDING

from messages import Event
from messages.inventory import StockReserved
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced, order_stream
from messages.payments import PaymentCharged, PaymentRefunded
from readstore.consistency import Answer, ConsistencyToken, wait_until
from readstore.db import get_database
from readstore.follows import Follow
from readstore.mongo import from_mongo, money
from readstore.projection import Projection, Update

POSITION = "_version"
#: The order's own stream, and its fulfilment streams (reservation, payment), by position.
FOLLOWS = (
    Follow("order", POSITION, creates=True),
    Follow("reservation", "_stock"),
    Follow("payment", "_payment"),
)
#: The moment each fulfilment fact became true, kept on the summary.
FULFILMENT_FACTS: dict[type[Event], str] = {
    StockReserved: "stock_reserved_at",
    PaymentCharged: "paid_at",
    PaymentRefunded: "refunded_at",
}


class OrderSummaries(Projection):
    name = "order_summary"
    collection_name = "order_summary"
    handles: ClassVar[tuple[type[Event], ...]] = (
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
        *FULFILMENT_FACTS,
    )
    follows = FOLLOWS

    def change(self, event: Event) -> Update:
        at = {"updated_at": event.occurred_at}
        match event:
            case OrderPlaced():
                return {"$set": {**at, **_placed(event)}}
            case OrderConfirmed():
                return {"$set": {**at, "status": "confirmed"}}
            case OrderCancelled():
                return {"$set": {**at, "status": "cancelled", "cancel_reason": event.reason}}
        fact = FULFILMENT_FACTS.get(type(event))
        return {"$set": {fact: event.occurred_at}} if fact else {}

    def indexes(self) -> None:
        self.collection.create_index([("customer_id", 1), ("placed_at", DESCENDING)])


def _placed(event: OrderPlaced) -> dict[str, Any]:
    return {
        "status": "pending",
        "customer_id": str(event.customer_id),
        "customer_name": event.customer_name,
        "lines": [
            {"sku": ln.sku, "quantity": ln.quantity, "unit_price": money(ln.unit_price)}
            for ln in event.lines
        ],
        "total": money(event.total),
        "shipping_address": event.shipping_address.model_dump(),
        "placed_at": event.occurred_at,
    }


class OrderView(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: UUID
    customer_id: UUID | None = None
    customer_name: str | None = None
    status: str = "pending"
    cancel_reason: str | None = None
    lines: tuple[dict[str, Any], ...] = ()
    total: Decimal | None = None
    shipping_address: dict[str, Any] | None = None
    placed_at: datetime | None = None
    updated_at: datetime | None = None
    stock_reserved_at: datetime | None = None
    paid_at: datetime | None = None
    refunded_at: datetime | None = None
    version: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fulfilment(self) -> str:
        """pending, stock_reserved, paid, confirmed or cancelled (see ``cancel_reason``)."""
        if self.status in ("confirmed", "cancelled"):
            return self.status
        if self.paid_at is not None:
            return "paid"
        return "stock_reserved" if self.stock_reserved_at is not None else "pending"

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> OrderView:
        fields = from_mongo({k: v for k, v in doc.items() if k not in ("_id", POSITION)})
        fields = {k: v for k, v in fields.items() if k in cls.model_fields}
        return cls(order_id=doc["_id"], version=doc.get(POSITION, 0), **fields)


class Page(BaseModel):
    items: tuple[OrderView, ...]
    page: int
    page_size: int
    has_more: bool


def get_order(
    order_id: UUID, token: ConsistencyToken | None = None, timeout: float = 5.0
) -> Answer[OrderView | None]:
    """The order's summary; with ``token``, wait (bounded) until it reflects that write."""
    collection = get_database()[OrderSummaries.collection_name]
    found: list[dict[str, Any] | None] = [None]

    def reached() -> bool:
        found[0] = collection.find_one({"_id": str(order_id)})
        if token is None or token.stream_id != order_stream(order_id):
            return True
        return found[0] is not None and found[0].get(POSITION, 0) >= token.version

    fresh = wait_until(reached, timeout if token else 0)
    doc = found[0]
    return Answer(OrderView.from_document(doc) if doc else None, stale=not fresh)


def list_customer_orders(customer_id: UUID, page: int = 1, page_size: int = 20) -> Page:
    """A customer's orders, newest first, ``page_size`` at a time (pages count from 1)."""
    page, page_size = max(page, 1), min(max(page_size, 1), 200)
    cursor = (
        get_database()[OrderSummaries.collection_name]
        .find({"customer_id": str(customer_id)})
        .sort([("placed_at", DESCENDING), ("_id", DESCENDING)])
        .skip((page - 1) * page_size)
        .limit(page_size + 1)
    )
    docs = list(cursor)
    items = tuple(OrderView.from_document(d) for d in docs[:page_size])
    return Page(items=items, page=page, page_size=page_size, has_more=len(docs) > page_size)
