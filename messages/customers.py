"""Customer contracts: registering a customer (``CustomerRegistered`` is at version 2)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import Field

from messages.base import Command, Event
from messages.registry import registry, upcaster
from messages.types import Amount, Flag, Id, Money


def customer_stream(customer_id: UUID) -> str:
    return f"customer-{customer_id}"


@registry.register
class RegisterCustomer(Command):
    CONTEXT = "customers"
    PUBLIC = True

    customer_id: Id
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=r"^[^@ \t\r\n]+@[^@ \t\r\n]+$", max_length=320)
    #: The most a single order of this customer may be charged (payments decline above it).
    payment_limit: Money = Decimal("10000")
    #: Added compatibly (with a default): publishers that omit it still validate.
    marketing_opt_in: Flag = False

    def stream_id(self) -> str:
        return customer_stream(self.customer_id)


@registry.register
class CustomerRegistered(Event):
    """v2: ``name`` became ``full_name``; ``marketing_opt_in`` was added (v1 had neither)."""

    VERSION = 2

    customer_id: Id
    full_name: str
    email: str
    payment_limit: Amount
    marketing_opt_in: Flag


@upcaster("CustomerRegistered", 1)
def customer_registered_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 → v2: rename ``name`` to ``full_name``; v1 customers never opted in."""
    data["full_name"] = data.pop("name", "")
    data.setdefault("marketing_opt_in", False)
    return data
