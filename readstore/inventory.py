"""The ``inventory_levels`` read model: per SKU, on hand, reserved and available.

A SKU's document follows its stream (position ``_version``): stock added, held and
released; each open hold is kept under ``_holds.<order id>`` until it ends. Committed stock
is recorded on each order's reservation stream, one event for several SKUs: the
reservation's own document (``inventory_levels_reservations``) follows that stream by
position, and committing *consumes* each SKU's open hold of the order, in the one update
that counts it. A redelivered commit finds no hold left to consume, however old it is; a
commit that arrives before its hold first brings the SKU level with its stream. A SKU's
document holds its counters and its open holds only: it does not grow with history.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from messages import Event
from messages.inventory import (
    StockAdded,
    StockCommitted,
    StockHeld,
    StockHoldReleased,
    StockReserved,
)
from readstore.db import get_database
from readstore.follows import Follow
from readstore.projection import Projection, Update

SKUS = Follow("sku")
RESERVATIONS = Follow("reservation", collection="reservations")


class InventoryLevels(Projection):
    name = "inventory_levels"
    collection_name = "inventory_levels"
    #: ``StockReserved`` changes nothing here, but delivered it brings the reservation's
    #: position to 1, so that its ``StockCommitted`` (version 2) applies at once instead
    #: of reading the stream from the store to fill the gap.
    handles: ClassVar[tuple[type[Event], ...]] = (
        StockAdded,
        StockHeld,
        StockHoldReleased,
        StockReserved,
        StockCommitted,
    )
    #: SKU streams first: a rebuild folds holds before the commits that consume them.
    follows = (SKUS, RESERVATIONS)

    def change(self, event: Event) -> Update:
        match event:
            case StockAdded():
                return {"$inc": {"added": event.quantity}}
            case StockHeld():
                hold = f"_holds.{event.order_id}"
                return {"$inc": {"held": event.quantity}, "$set": {hold: event.quantity}}
            case StockHoldReleased():
                hold = f"_holds.{event.order_id}"
                return {"$inc": {"released": event.quantity}, "$unset": {hold: ""}}
            case StockCommitted():
                return {"$set": {"committed_skus": [line.sku for line in event.lines]}}
        return {}

    def propagate(self, event: Event) -> None:
        if isinstance(event, StockCommitted):
            for line in event.lines:
                self._consume(event, line.sku, line.quantity)

    def _consume(self, event: StockCommitted, sku: str, quantity: int) -> None:
        """Count the order's hold on ``sku`` as committed, once: the hold goes with it."""
        hold = f"_holds.{event.order_id}"
        query = {"_id": sku, hold: {"$exists": True}}
        update = {"$inc": {"committed": quantity}, "$unset": {hold: ""}}
        if self.documents.update(self.collection.name, query, update) or self.folding:
            return
        self.catch_up_stream(SKUS, sku)  # the hold may not have been applied yet
        self.documents.update(self.collection.name, query, update)

    def indexes(self) -> None:
        """Documents are found by ``_id`` only."""


class InventoryLevel(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    on_hand: int
    reserved: int
    available: int

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> InventoryLevel:
        added, held = doc.get("added", 0), doc.get("held", 0)
        released, committed = doc.get("released", 0), doc.get("committed", 0)
        return cls(
            sku=doc["_id"],
            on_hand=added - committed,
            reserved=held - released - committed,
            available=added - held + released,
        )


def get_inventory_level(sku: str) -> InventoryLevel | None:
    doc = get_database()[InventoryLevels.collection_name].find_one({"_id": sku})
    return InventoryLevel.from_document(doc) if doc else None


def list_inventory_levels() -> list[InventoryLevel]:
    collection = get_database()[InventoryLevels.collection_name]
    return [
        InventoryLevel.from_document(d) for d in collection.find({}, {"_holds": 0}).sort("_id", 1)
    ]
