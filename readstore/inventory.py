"""The ``inventory_levels`` read model: per SKU, on hand, reserved and available.

A SKU's document follows its stream (position ``_version``): stock added, held and
released. Committed stock is recorded on each order's reservation stream, one event for
several SKUs, so each SKU's document keeps the ids of the commits it applied (bounded) and
applies a commit only if its id is not among them, in the same update.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pymongo.errors import DuplicateKeyError

from messages import Event
from messages.inventory import StockAdded, StockCommitted, StockHeld, StockHoldReleased
from readstore.db import get_database
from readstore.projection import Projection, Update

#: Commit ids kept per SKU to recognise a redelivered commit.
APPLIED_KEPT = 1000


class InventoryLevels(Projection):
    name = "inventory_levels"
    collection_name = "inventory_levels"
    handles: ClassVar[tuple[type[Event], ...]] = (
        StockAdded,
        StockHeld,
        StockHoldReleased,
        StockCommitted,
    )

    def locate(self, event: Event) -> tuple[Any, str]:
        return event.sku, "_version"  # type: ignore[attr-defined]

    def change(self, event: Event) -> Update:
        match event:
            case StockAdded():
                return {"$inc": {"added": event.quantity}}
            case StockHeld():
                return {"$inc": {"held": event.quantity}}
            case StockHoldReleased():
                return {"$inc": {"released": event.quantity}}
        return {}

    def apply(self, event: Event) -> bool:
        if isinstance(event, StockCommitted):
            applied = [self._commit(event, line.sku, line.quantity) for line in event.lines]
            return all(applied)
        return super().apply(event)

    def _commit(self, event: StockCommitted, sku: str, quantity: int) -> bool:
        applied = str(event.message_id)
        try:
            result = self.collection.update_one(
                {"_id": sku, "_committed": {"$ne": applied}},
                {
                    "$inc": {"committed": quantity},
                    "$push": {"_committed": {"$each": [applied], "$slice": -APPLIED_KEPT}},
                },
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # the SKU's document has this commit: applied already
        return result.upserted_id is not None or result.modified_count == 1


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
        InventoryLevel.from_document(d)
        for d in collection.find({}, {"_committed": 0}).sort("_id", 1)
    ]
