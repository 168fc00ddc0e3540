"""Inventory contracts: stock per SKU, and an order's all-or-nothing stock reservation."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from messages.base import Command, Event
from messages.registry import registry
from messages.types import Id, Whole


def sku_stream(sku: str) -> str:
    return f"sku-{sku}"


def reservation_stream(order_id: UUID) -> str:
    return f"reservation-{order_id}"


class StockLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: Whole = Field(gt=0, le=10_000)


def merge_lines(lines: tuple[StockLine, ...]) -> tuple[StockLine, ...]:
    """One line per SKU (quantities summed), sorted by SKU: the order holds are taken in."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return tuple(StockLine(sku=sku, quantity=qty) for sku, qty in sorted(totals.items()))


@registry.register
class AddStock(Command):
    """Restock: ``quantity`` more units of ``sku`` on hand."""

    CONTEXT = "inventory"
    PUBLIC = True
    sku: str = Field(min_length=1, max_length=64)
    quantity: Whole = Field(gt=0, le=1_000_000)

    def stream_id(self) -> str:
        return sku_stream(self.sku)


class _ReservationCommand(Command):
    CONTEXT = "inventory"
    order_id: Id

    def stream_id(self) -> str:
        return reservation_stream(self.order_id)


@registry.register
class ReserveStock(_ReservationCommand):
    """Hold every line of an order, or none of them."""

    lines: tuple[StockLine, ...] = Field(min_length=1, max_length=100)


@registry.register
class ReleaseStock(_ReservationCommand):
    """Compensation: give back whatever an order holds, and refuse any later hold for it."""

    lines: tuple[StockLine, ...] = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=200)


@registry.register
class CommitStock(_ReservationCommand):
    """The order is confirmed: its held stock leaves the shelf."""


# -- events on a SKU's stream ----------------------------------------------------------------
@registry.register
class StockAdded(Event):
    sku: str
    quantity: Whole


@registry.register
class StockHeld(Event):
    sku: str
    order_id: Id
    quantity: Whole


@registry.register
class StockHoldReleased(Event):
    """The order's hold on this SKU is over for good (``quantity`` 0: there was none)."""

    sku: str
    order_id: Id
    quantity: Whole


# -- events on an order's reservation stream -------------------------------------------------
@registry.register
class StockReserved(Event):
    order_id: Id
    lines: tuple[StockLine, ...]


@registry.register
class StockReservationFailed(Event):
    order_id: Id
    short: tuple[str, ...]


@registry.register
class StockReleased(Event):
    order_id: Id
    lines: tuple[StockLine, ...]
    reason: str


@registry.register
class StockCommitted(Event):
    order_id: Id
    lines: tuple[StockLine, ...]
