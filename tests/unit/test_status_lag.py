"""``sagaworks status`` notices a projection whose lag cannot be measured."""

from __future__ import annotations

from typing import Any

from readstore.inventory import InventoryLevels
from tests.unit.test_readside_regressions import seed_fulfilled_order
from workers.ops.status import Status, attention, unmeasured
from workers.subscribers.projections import PROJECTIONS
from workers.write.eventstore import EventStore


class Unmeasurable(InventoryLevels):
    """Places events by a field the reservation events do not carry, as it once did."""

    def collection_of(self, follow: Any) -> str:
        raise AttributeError("'StockCommitted' object has no attribute 'sku'")


def test_every_projection_is_measured_on_a_store_with_confirmed_orders(database):
    # Given an order through reservation and stock commit
    seed_fulfilled_order(EventStore(database))

    # When each projection's lag is measured
    found = {name: unmeasured(database, kind) for name, (kind, _) in PROJECTIONS.items()}

    # Then none failed
    assert found == dict.fromkeys(PROJECTIONS)


def test_a_projection_whose_lag_cannot_be_measured_needs_attention(database):
    # Given a projection whose lag measure fails on this store
    seed_fulfilled_order(EventStore(database))
    reason = unmeasured(database, Unmeasurable)
    figures = {"lag": 0, "queued": 0, "parked_streams": 0, "parked_events": 0}

    # When status judges it
    notes = attention(
        Status([], {"inventory_levels": {**figures, "unmeasured": reason}}, {}, 0), 10
    )

    # Then it says so, with the reason
    assert notes == [f"projection inventory_levels: lag cannot be measured ({reason})"]
    assert reason is not None and "AttributeError" in reason
