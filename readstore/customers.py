"""The ``customer_profile`` read model: a customer with figures across all their orders.

It follows two kinds of stream: the customer's own (position ``_version``) and each of the
customer's orders (position ``orders.<order id>``). Every counter moves in the same atomic
update that advances the position of the stream it came from, so a redelivered event
changes nothing: the ``$inc`` is guarded by its proof, never blind.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from messages import Event
from messages.customers import CustomerRegistered, customer_stream
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from readstore.consistency import Answer, ConsistencyToken, wait_until
from readstore.db import get_database
from readstore.mongo import dig, from_mongo, money
from readstore.projection import Projection, Update


class CustomerProfiles(Projection):
    name = "customer_profile"
    collection_name = "customer_profile"
    handles: ClassVar[tuple[type[Event], ...]] = (
        CustomerRegistered,
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
    )

    def locate(self, event: Event) -> tuple[Any, str]:
        customer_id = str(event.customer_id)  # type: ignore[attr-defined]
        if isinstance(event, CustomerRegistered):
            return customer_id, "_version"
        return customer_id, f"orders.{event.order_id}"  # type: ignore[attr-defined]

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
                return {"$inc": {"orders_placed": 1}, "$max": {"last_order_at": event.occurred_at}}
            case OrderConfirmed():
                return {"$inc": {"orders_confirmed": 1, "total_spent": money(event.total)}}
            case OrderCancelled():
                return {"$inc": {"orders_cancelled": 1}}
        return {}


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

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> CustomerProfile:
        fields = from_mongo({k: v for k, v in doc.items() if k in cls.model_fields})
        return cls(customer_id=doc["_id"], **fields)


def _position_path(customer_id: UUID, token: ConsistencyToken) -> str | None:
    if token.stream_id == customer_stream(customer_id):
        return "_version"
    if token.stream_id.startswith("order-"):
        return f"orders.{token.stream_id.removeprefix('order-')}"
    return None


def get_customer_profile(
    customer_id: UUID, token: ConsistencyToken | None = None, timeout: float = 5.0
) -> Answer[CustomerProfile | None]:
    """The customer's profile; with ``token`` (the customer's or one of their orders'), wait."""
    collection = get_database()[CustomerProfiles.collection_name]
    path = _position_path(customer_id, token) if token else None
    found: list[dict[str, Any] | None] = [None]

    def reached() -> bool:
        found[0] = collection.find_one({"_id": str(customer_id)})
        if token is None or path is None:
            return True
        doc = found[0]
        return doc is not None and int(dig(doc, path) or 0) >= token.version

    fresh = wait_until(reached, timeout if token else 0)
    doc = found[0]
    return Answer(CustomerProfile.from_document(doc) if doc else None, stale=not fresh)
