"""Payment contracts: charging an order once, and refunding it."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from messages.base import Command, Event
from messages.registry import registry
from messages.types import Amount, Id


def payment_stream(order_id: UUID) -> str:
    return f"payment-{order_id}"


class _PaymentCommand(Command):
    CONTEXT = "payments"
    order_id: Id

    def stream_id(self) -> str:
        return payment_stream(self.order_id)


@registry.register
class ChargePayment(_PaymentCommand):
    customer_id: Id
    amount: Amount
    payment_method: str = Field(min_length=1, max_length=64)


@registry.register
class RefundPayment(_PaymentCommand):
    reason: str = Field(min_length=1, max_length=200)


class _PaymentEvent(Event):
    order_id: Id


@registry.register
class PaymentCharged(_PaymentEvent):
    amount: Amount
    reference: str


@registry.register
class PaymentDeclined(_PaymentEvent):
    amount: Amount
    reason: str


@registry.register
class PaymentRefunded(_PaymentEvent):
    amount: Amount
    reference: str
