"""Projections are idempotent and per-stream ordered by construction, whatever the delivery."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal

import pytest

from messages import caused_by
from messages.orders import OrderCancelled, OrderConfirmed, order_stream
from readstore.customers import CustomerProfiles
from readstore.eventlog import iter_commits, read_stream
from readstore.inventory import InventoryLevels
from readstore.orders import OrderSummaries
from readstore.verify import verify_projection
from tests.readside import seed_fulfilment
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


@pytest.mark.parametrize("offset", range(4))
@pytest.mark.parametrize("kind", [CustomerProfiles, InventoryLevels], ids=lambda k: k.name)
def test_an_apply_cut_between_its_steps_is_finished_by_the_next_delivery(database, kind, offset):
    # Given orders through fulfilment in the store, and every way to cut an event's steps
    # (each offset shifts which event is cut where, so every event meets every cut)
    seed_fulfilment(EventStore(database), orders=4, seed=11)
    events = [e for c in iter_commits(database) for e in c.events if isinstance(e, kind.handles)]
    projection = kind(database)
    cuts = offset

    # When, in the log's order, each event of a linked stream first lands only in part (a
    # crash after its first 0, 1, 2, ... steps) and every other event whole, then every
    # event is delivered again
    for event in events:
        where = projection.place(event)
        if where.follow != projection.linked:
            projection.apply(event)
            continue
        steps = projection.steps(event, where)
        projection.documents.run(steps[: cuts % (len(steps) + 1)])
        cuts += 1
    assert not verify_projection(database, kind).consistent  # the cuts left work undone
    for event in events:
        projection.apply(event)

    # Then the model is what a rebuild from the log makes
    report = verify_projection(database, kind)
    assert report.consistent, report.differences
