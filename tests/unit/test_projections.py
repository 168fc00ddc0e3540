"""Projections are idempotent and per-stream ordered by construction, whatever the delivery."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal

from messages import caused_by
from messages.orders import OrderCancelled, OrderConfirmed, order_stream
from readstore.customers import CustomerProfiles
from readstore.eventlog import read_stream
from readstore.orders import OrderSummaries
from tests.support import order_placed, place_order
from workers.ops.verify import verify_read_models
from workers.write.eventstore import EventStore


def store_order(store: EventStore, customer_id: uuid.UUID, outcome: str) -> None:
    """An order placed then confirmed or cancelled, written to the store (not delivered)."""
    command = place_order(customer_id, ("SKU-1", 2, "5.00"))
    keys = {"order_id": command.order_id, "customer_id": customer_id, "total": Decimal("10.00")}
    placed = order_placed(command)
    final = (
        caused_by(OrderConfirmed, command, **keys)
        if outcome == "confirmed"
        else caused_by(OrderCancelled, command, reason="no", **keys)
    )
    store.append(order_stream(command.order_id), 0, [placed])
    store.append(order_stream(command.order_id), 1, [final])


def test_shuffled_and_duplicated_deliveries_end_as_the_events_say(database):
    # Given 30 orders of 3 customers in the store, each confirmed or cancelled
    store = EventStore(database)
    rng = random.Random(42)
    customers = [uuid.uuid4() for _ in range(3)]
    for i in range(30):
        store_order(store, customers[i % 3], rng.choice(["confirmed", "cancelled"]))
    events = [e for doc in database.commits.find() for e in read_stream(database, doc["stream_id"])]

    # When every event is delivered one to three times, in a random order
    deliveries = [e for e in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    summaries, profiles = OrderSummaries(database), CustomerProfiles(database)
    for event in deliveries:
        summaries.apply(event)
        profiles.apply(event)

    # Then both read models equal a recomputation from the store
    report = verify_read_models(database, ["order_summary", "customer_profile"])
    assert report.consistent, report.differences


def test_a_duplicate_delivery_reports_not_applied(database):
    # Given an order whose first event was applied
    store = EventStore(database)
    store_order(store, uuid.uuid4(), "confirmed")
    stream = database.commits.find_one()["stream_id"]
    placed, confirmed = read_stream(database, stream)
    summaries = OrderSummaries(database)
    assert summaries.apply(placed)

    # When it arrives again, then its successor, then the successor again
    outcomes = [summaries.apply(placed), summaries.apply(confirmed), summaries.apply(confirmed)]

    # Then only the first delivery of each changed the model
    assert outcomes == [False, True, False]


def test_an_event_ahead_of_its_stream_heals_the_gap_from_the_store(database):
    # Given an order placed and confirmed in the store, nothing applied yet
    store = EventStore(database)
    store_order(store, uuid.uuid4(), "confirmed")
    stream = database.commits.find_one()["stream_id"]
    _, confirmed = read_stream(database, stream)

    # When only version 2 is delivered
    assert OrderSummaries(database).apply(confirmed)

    # Then the model holds both versions' effects
    doc = database.order_summary.find_one()
    assert (doc["status"], doc["_version"], str(doc["total"])) == ("confirmed", 2, "10.00")
