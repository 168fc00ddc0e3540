"""``sagaworks status`` notices a projection whose lag cannot be measured."""

from __future__ import annotations

import random
import uuid
from typing import Any

from pymongo import monitoring

from readstore.inventory import InventoryLevels
from tests.readside import Streams, fulfil
from tests.support import listened
from tests.unit.test_readside_regressions import seed_fulfilled_order
from workers.ops.status import LAG_SAMPLE, Status, attention, unmeasured
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


class Reads(monitoring.CommandListener):
    """Each find and aggregate: its collection, and how many documents it may read at most
    (``None``: no bound)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name == "find":
            limit = command.get("limit") or None
            self.seen.append((command["find"], limit))
        elif event.command_name == "aggregate":
            self.seen.append((command["aggregate"], _bound(command["pipeline"])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _bound(pipeline: list[dict[str, Any]]) -> int | None:
    """How many streams or documents an aggregate reads at most: its ``$limit``, or the
    streams its ``$match`` names one by one (``None``: a range, as many as the store holds)."""
    bounds = [stage["$limit"] for stage in pipeline if "$limit" in stage]
    for stage in pipeline:
        named = stage.get("$match", {}).get("stream_id", {})
        if isinstance(named, dict) and "$in" in named:
            bounds.append(len(named["$in"]))
    return min(bounds) if bounds else None


def test_status_checks_each_projections_lag_measure_on_a_sample_not_the_whole_store(
    mongo_url: str,
) -> None:
    # Given an event store with orders (status runs on every look, and the console's overview
    # looks every few seconds: reading every commit and position there grows with the store)
    reads = Reads()
    with listened(mongo_url, reads) as database:
        streams, rng = Streams(EventStore(database)), random.Random(2)
        for _ in range(5):
            fulfil(streams, uuid.uuid4(), "confirmed", rng)
        reads.seen.clear()
        # When status checks that each projection's lag can be measured
        found = {name: unmeasured(database, kind) for name, (kind, _) in PROJECTIONS.items()}
    # Then every one can, and each read it made is bounded by the sample
    assert found == dict.fromkeys(PROJECTIONS)
    assert reads.seen
    unbounded = [(c, limit) for c, limit in reads.seen if limit is None or limit > LAG_SAMPLE]
    assert unbounded == []
