"""Order contracts: placing, confirming and cancelling orders."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from messages.base import Command, Event
from messages.registry import registry
from messages.types import Amount, Id, Money, Whole


def order_stream(order_id: UUID) -> str:
    return f"order-{order_id}"


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: Whole = Field(gt=0, le=10_000)
    unit_price: Money

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


class Address(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    street: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")


def order_total(lines: tuple[OrderLine, ...]) -> Decimal:
    return sum((line.amount for line in lines), Decimal("0.00"))


class _OrderCommand(Command):
    CONTEXT = "orders"
    order_id: Id

    def stream_id(self) -> str:
        return order_stream(self.order_id)


@registry.register
class PlaceOrder(_OrderCommand):
    PUBLIC = True
    customer_id: Id
    lines: tuple[OrderLine, ...] = Field(min_length=1, max_length=100)
    shipping_address: Address
    #: How the customer pays; the payment gateway decides on it (``card`` unless said).
    payment_method: str = Field(default="card", min_length=1, max_length=64)


@registry.register
class ConfirmOrder(_OrderCommand):
    """Public where the fulfilment saga is off (orders confirmed upstream); else the saga's."""

    PUBLIC = True


@registry.register
class CancelOrder(_OrderCommand):
    PUBLIC = True
    reason: str = Field(min_length=1, max_length=200)


class _OrderEvent(Event):
    order_id: Id
    customer_id: Id


@registry.register
class OrderPlaced(_OrderEvent):
    customer_name: str
    lines: tuple[OrderLine, ...]
    shipping_address: Address
    total: Amount
    payment_method: str = "card"


@registry.register
class OrderConfirmed(_OrderEvent):
    total: Amount


@registry.register
class OrderCancelled(_OrderEvent):
    reason: str
    total: Amount
