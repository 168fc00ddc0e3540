"""The inventory's aggregates: a SKU's stock (three counters) and an order's reservation."""

from __future__ import annotations

import uuid
from typing import Literal
from uuid import UUID

from messages import Command, Message, caused_by
from messages.inventory import (
    AddStock,
    StockAdded,
    StockCommitted,
    StockHeld,
    StockHoldReleased,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from workers.write.aggregates import Aggregate

Fate = Literal["held", "short"]


class Sku(Aggregate):
    """Stock of one SKU: three counters, whatever the number of orders it has seen.

    Which orders hold it is not kept here: each order's hold and release on a SKU are
    committed under ids derived from the order and the SKU (``hold_id``, ``release_id``), so
    the event store's unique ``(stream, command)`` index admits at most one of each.
    """

    stream_type = "sku"
    SCHEMA_VERSION = 2  # version 1 kept every order's hold and release: unbounded

    added: int = 0
    held: int = 0
    released: int = 0

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.added = 0
        self.held = 0
        self.released = 0

    @property
    def available(self) -> int:
        return self.added - self.held + self.released

    def add(self, command: AddStock) -> None:
        self.record(caused_by(StockAdded, command, sku=command.sku, quantity=command.quantity))

    def hold(self, line: StockLine, order_id: UUID, cause: Message) -> Fate:
        if self.available < line.quantity:
            return "short"
        self.record(
            caused_by(StockHeld, cause, sku=line.sku, order_id=order_id, quantity=line.quantity)
        )
        return "held"

    def release(self, line: StockLine, order_id: UUID, cause: Message) -> None:
        self.record(
            caused_by(
                StockHoldReleased, cause, sku=line.sku, order_id=order_id, quantity=line.quantity
            )
        )

    def when_StockAdded(self, event: StockAdded) -> None:
        self.added += event.quantity

    def when_StockHeld(self, event: StockHeld) -> None:
        self.held += event.quantity

    def when_StockHoldReleased(self, event: StockHoldReleased) -> None:
        self.released += event.quantity


def acting_as(command: Command, message_id: UUID) -> Command:
    """``command`` under the id of one SKU action of its order, so it commits at most once."""
    return command.model_copy(update={"message_id": message_id})


def hold_id(order_id: UUID, sku: str) -> UUID:
    return uuid.uuid5(order_id, f"inventory:hold {sku}")


def release_id(order_id: UUID, sku: str) -> UUID:
    return uuid.uuid5(order_id, f"inventory:release {sku}")


class Reservation(Aggregate):
    """One order's reservation: new, then reserved | failed | released, then committed."""

    stream_type = "reservation"
    SNAPSHOT_EVERY = 0  # a few events per order: reading them beats a snapshot look-up

    status: str = "new"
    lines: tuple[StockLine, ...] = ()

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.status = "new"
        self.lines: tuple[StockLine, ...] = ()

    def when_StockReserved(self, event: StockReserved) -> None:
        self.status, self.lines = "reserved", event.lines

    def when_StockReservationFailed(self, _: StockReservationFailed) -> None:
        self.status = "failed"

    def when_StockReleased(self, _: StockReleased) -> None:
        self.status = "released"

    def when_StockCommitted(self, _: StockCommitted) -> None:
        self.status = "committed"
