"""Analytics read models: equal to a recomputation from the event store, whatever the delivery."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date
from typing import Any

from messages.customers import CustomerRegistered
from messages.orders import CancelOrder, ConfirmOrder
from readstore.analytics import (
    CustomerRegistrations,
    OrderAnalytics,
    orders_by_status,
    revenue_by_day,
)
from readstore.cache import query_cache
from readstore.eventlog import iter_commits
from tests.readside import assert_dashboard_matches, recompute, seed_history
from tests.support import place_order, register_customer, settle
from workers.ops.verify import verify_read_models
from workers.publishing import publish
from workers.subscribers.projections import PROJECTIONS
from workers.write.eventstore import EventStore
from workers.write.outbox import send_event


def shuffled_with_duplicates(database: Any, seed: int = 3) -> list[Any]:
    events = [event for commit in iter_commits(database) for event in commit.events]
    rng = random.Random(seed)
    deliveries = events + rng.sample(events, len(events) // 2)
    rng.shuffle(deliveries)
    return deliveries


def test_analytics_equal_a_recomputation_after_shuffled_duplicated_deliveries(database):
    # Given a week of history in the event store
    query_cache.clear()
    seed_history(EventStore(database))

    # When every event is delivered out of order, half of them twice
    orders, customers = OrderAnalytics(database), CustomerRegistrations(database)
    for event in shuffled_with_duplicates(database):
        target = customers if isinstance(event, CustomerRegistered) else orders
        target.apply(event)

    # Then the dashboard equals a recomputation from the store
    assert_dashboard_matches(recompute(database))


def test_date_ranges_select_days_inclusively(database):
    # Given a week of history, applied in order
    query_cache.clear()
    seed_history(EventStore(database))
    for event in shuffled_with_duplicates(database):
        projection = (
            CustomerRegistrations if isinstance(event, CustomerRegistered) else OrderAnalytics
        )
        projection(database).apply(event)
    expected = recompute(database)

    # When asking for two days of it
    start, end = date(2026, 3, 2), date(2026, 3, 3)
    rows = revenue_by_day(start, end).value

    # Then only those days answer, with the same figures
    want = {d: v for d, v in expected["revenue"].items() if "2026-03-02" <= d <= "2026-03-03"}
    assert {r.day.isoformat(): (r.orders, r.revenue) for r in rows} == want
    placed_in_range = Counter(
        o["status"]
        for o in expected["status_by_placed"].values()
        if "2026-03-02" <= o["placed"] <= "2026-03-03"
    )
    assert {s.status: s.orders for s in orders_by_status(start, end).value} == placed_in_range


def test_analytics_through_the_broker_survive_redelivery(stub_broker, stub_worker, database):
    # Given customers and orders handled by the real pipeline, some confirmed, one cancelled
    query_cache.clear()
    customers = [register_customer(f"C{i}") for i in range(3)]
    for customer in customers:
        publish(customer)
    settle(stub_broker, stub_worker)
    placed = [
        place_order(c.customer_id, ("APPLE", i + 1, "2.00"), ("FIG", 1, "5.00"))
        for i, c in enumerate(customers * 2)
    ]
    for command in placed:
        publish(command)
    settle(stub_broker, stub_worker)
    for command in placed[:4]:
        publish(ConfirmOrder(order_id=command.order_id))
    publish(CancelOrder(order_id=placed[5].order_id, reason="changed mind"))
    settle(stub_broker, stub_worker)

    # When every event is sent again to the analytics actors, shuffled
    for event in shuffled_with_duplicates(database):
        for name in ("order_analytics", "customer_registrations"):
            projection, actor = PROJECTIONS[name]
            if isinstance(event, projection.handles):
                send_event(event, actor)
    settle(stub_broker, stub_worker)

    # Then the dashboard still equals a recomputation from the store, and every read model
    # equals a rebuild from the log
    assert_dashboard_matches(recompute(database))
    report = verify_read_models(database)
    assert report.consistent, report.differences
