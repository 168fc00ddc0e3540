"""The ``inventory_levels`` read model: per SKU, on hand, reserved and available.

A SKU's document follows its stream (position ``_version``) for the stock added; what is
reserved, committed and released comes from each order's reservation stream, whose events
carry the order's lines: ``StockReserved`` holds them, then ``StockCommitted`` or
``StockReleased`` ends the hold. The reservation has a document of its own (position
``_reservation``, the gate of ``readstore.linked``) in the same collection, and each SKU
of its lines keeps the order's entry under ``_holds`` while the hold is open: one bulk
write per event (or per batch) applies the reservation's position and every SKU's change
together, and a SKU's document holds its counters and its open holds only, whatever its
history. The holds taken on the SKUs' streams are not followed: a reservation that fails
gives back whatever it held, and one released before it was reserved held nothing for
good, so the levels are those of the reservations, with the shelf's stock as the SKU
streams say (``available = added - held + released``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from messages import Event
from messages.inventory import StockAdded, StockCommitted, StockReleased, StockReserved
from readstore.db import get_database
from readstore.follows import Follow
from readstore.linked import ENDED, Linked, Totals
from readstore.projection import Update

SKUS = Follow("sku")
RESERVATIONS = Follow("reservation", "_reservation")
#: What each reservation event counts on the SKUs of its lines.
COUNTED: dict[type[Event], str] = {
    StockReserved: "held",
    StockCommitted: "committed",
    StockReleased: "released",
}


class InventoryLevels(Linked):
    name = "inventory_levels"
    collection_name = "inventory_levels"
    handles: ClassVar[tuple[type[Event], ...]] = (
        StockAdded,
        StockReserved,
        StockCommitted,
        StockReleased,
    )
    #: SKU streams first: a rebuild folds the stock added, then the reservations.
    follows = (SKUS, RESERVATIONS)
    linked = RESERVATIONS
    entries = "_holds"

    def change(self, event: Event) -> Update:
        match event:
            case StockAdded():
                return {"$inc": {"added": event.quantity}}
            case StockReserved() | StockCommitted() | StockReleased():
                return {"$set": {"status": type(event).__name__}}
        return {}

    def totals(self, event: Event) -> Totals:
        counted = COUNTED.get(type(event))
        if counted is None or not self._holding(event):
            return []
        lines = getattr(event, "lines", ())
        return [(line.sku, {"$inc": {counted: line.quantity}}) for line in lines]

    def _holding(self, event: Event) -> bool:
        """A release changes the SKUs only after a reservation (version 1 held nothing)."""
        return not isinstance(event, StockReleased) or (event.stream_version or 0) > 1

    def final(self, event: Event) -> bool:
        return isinstance(event, StockCommitted | StockReleased)

    def indexes(self) -> None:
        """Documents are found by ``_id`` only."""


#: A projection that leaves a SKU document's bookkeeping out (its open holds, its ended ones).
BOOKKEEPING_HIDDEN = {InventoryLevels.entries: 0, ENDED: 0}


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
    skus = collection.find({RESERVATIONS.position: {"$exists": False}}, BOOKKEEPING_HIDDEN)
    return [InventoryLevel.from_document(d) for d in skus.sort("_id", 1)]
