"""Customer contracts: registering a customer."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from pydantic import Field

from messages.base import Command, Event
from messages.registry import registry


def customer_stream(customer_id: UUID) -> str:
    return f"customer-{customer_id}"


@registry.register
class RegisterCustomer(Command):
    CONTEXT = "customers"

    customer_id: UUID
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)
    #: The most a single order of this customer may be charged (payments decline above it).
    payment_limit: Decimal = Field(default=Decimal("10000"), ge=0, decimal_places=2)

    def stream_id(self) -> str:
        return customer_stream(self.customer_id)


@registry.register
class CustomerRegistered(Event):
    customer_id: UUID
    name: str
    email: str
    payment_limit: Decimal
