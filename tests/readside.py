"""Read-side test helpers: seed a history straight into the store, recompute the dashboard
from the event store independently of the projections, compare."""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from messages.customers import CustomerRegistered, customer_stream
from messages.inventory import (
    StockAdded,
    StockCommitted,
    StockHeld,
    StockHoldReleased,
    StockLine,
    StockReleased,
    StockReserved,
    reservation_stream,
    sku_stream,
)
from messages.orders import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    order_stream,
    order_total,
)
from messages.payments import PaymentCharged, PaymentRefunded, payment_stream
from readstore.analytics import (
    orders_by_status,
    registrations_by_day,
    revenue_by_day,
    top_products,
)
from readstore.eventlog import iter_commits
from tests.support import ADDRESS
from workers.write.eventstore import EventStore

DAY0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
SKUS = ("APPLE", "PEAR", "PLUM", "FIG")


def seed_history(store: EventStore, orders: int = 40, seed: int = 7) -> None:
    """Customers and orders over a week, each with a random fate, straight into the store."""
    rng = random.Random(seed)
    customers = [uuid.uuid4() for _ in range(6)]
    for i, customer_id in enumerate(customers):
        at = DAY0 + timedelta(days=i % 3)
        registered = CustomerRegistered(
            customer_id=customer_id,
            full_name=f"C{i}",
            email=f"c{i}@example.com",
            payment_limit=Decimal("1000"),
            marketing_opt_in=i % 2 == 0,
            occurred_at=at,
        )
        store.append(customer_stream(customer_id), 0, [registered])
    for _ in range(orders):
        seed_order(store, rng, rng.choice(customers))


def seed_order(store: EventStore, rng: random.Random, customer_id: uuid.UUID) -> None:
    order_id = uuid.uuid4()
    lines = tuple(
        OrderLine(sku=sku, quantity=rng.randint(1, 5), unit_price=Decimal(rng.randint(1, 9)))
        for sku in rng.sample(SKUS, rng.randint(1, 3))
    )
    placed_at = DAY0 + timedelta(days=rng.randint(0, 6), minutes=rng.randint(0, 600))
    keys: dict[str, Any] = {"order_id": order_id, "customer_id": customer_id}
    total = order_total(lines)
    placed = OrderPlaced(
        **keys,
        customer_name="x",
        lines=lines,
        shipping_address=ADDRESS,
        total=total,
        occurred_at=placed_at,
    )
    stream = order_stream(order_id)
    store.append(stream, 0, [placed])
    fate = rng.random()
    later = placed_at + timedelta(hours=rng.choice([1, 20, 30]))
    if fate < 0.6:
        store.append(stream, 1, [OrderConfirmed(**keys, total=total, occurred_at=later)])
    elif fate < 0.8:
        store.append(
            stream, 1, [OrderCancelled(**keys, reason="r", total=total, occurred_at=later)]
        )


def recompute(database: Any) -> dict[str, Any]:
    """The dashboard's figures from the event store alone, independently of the projections."""
    orders: dict[str, dict[str, Any]] = {}
    registrations: Counter[str] = Counter()
    opted_in: Counter[str] = Counter()
    for commit in iter_commits(database):
        for event in commit.events:
            match event:
                case CustomerRegistered():
                    registrations[event.occurred_at.date().isoformat()] += 1
                    opted_in[event.occurred_at.date().isoformat()] += event.marketing_opt_in
                case OrderPlaced():
                    orders[str(event.order_id)] = {
                        "status": "pending",
                        "placed": event.occurred_at.date().isoformat(),
                        "lines": event.lines,
                        "total": event.total,
                    }
                case OrderConfirmed():
                    orders[str(event.order_id)].update(
                        status="confirmed", day=event.occurred_at.date().isoformat()
                    )
                case OrderCancelled():
                    orders[str(event.order_id)]["status"] = "cancelled"
    revenue: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    quantity: Counter[str] = Counter()
    sales: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders.values():
        if order["status"] == "confirmed":
            revenue[order["day"]][0] += 1
            revenue[order["day"]][1] += order["total"]
            for line in order["lines"]:
                quantity[line.sku] += line.quantity
                sales[line.sku] += line.amount
    return {
        "revenue": {d: tuple(v) for d, v in revenue.items()},
        "status": Counter(o["status"] for o in orders.values()),
        "status_by_placed": orders,
        "quantity": quantity,
        "sales": dict(sales),
        "registrations": registrations,
        "opted_in": opted_in,
    }


def assert_dashboard_matches(expected: dict[str, Any]) -> None:
    assert_order_figures_match(expected)
    assert_registrations_match(expected)


def assert_order_figures_match(expected: dict[str, Any]) -> None:
    assert expected["revenue"], "the history should hold confirmed orders"
    revenue = {r.day.isoformat(): (r.orders, r.revenue) for r in revenue_by_day().value}
    assert revenue == expected["revenue"]
    assert {s.status: s.orders for s in orders_by_status().value} == expected["status"]
    products = top_products(limit=100).value
    assert {p.sku: p.quantity for p in products} == dict(expected["quantity"])
    assert {p.sku: p.revenue for p in products} == expected["sales"]


def assert_registrations_match(expected: dict[str, Any]) -> None:
    registered = {
        r.day.isoformat(): (r.customers, r.opted_in) for r in registrations_by_day().value
    }
    assert registered == {
        d: (n, expected["opted_in"][d]) for d, n in expected["registrations"].items()
    }


class Streams:
    """Appends to the store, tracking each stream's version."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.versions: Counter[str] = Counter()

    def add(self, stream: str, *events: Any) -> None:
        self.store.append(stream, self.versions[stream], list(events))
        self.versions[stream] += len(events)


def seed_fulfilment(store: EventStore, orders: int = 12, seed: int = 5) -> None:
    """Orders through stock, payment and confirmation (some cancelled with compensation,
    some still in flight), on every kind of stream the projections follow."""
    rng = random.Random(seed)
    streams = Streams(store)
    customers = [uuid.uuid4() for _ in range(3)]
    for i, customer_id in enumerate(customers):
        registered = CustomerRegistered(
            customer_id=customer_id,
            full_name=f"F{i}",
            email=f"f{i}@example.com",
            payment_limit=Decimal("1000"),
            marketing_opt_in=False,
        )
        streams.add(customer_stream(customer_id), registered)
    for sku in SKUS:
        streams.add(sku_stream(sku), StockAdded(sku=sku, quantity=1000))
    for _ in range(orders):
        fulfil(
            streams, rng.choice(customers), rng.choice(["confirmed", "cancelled", "in flight"]), rng
        )


def fulfil(streams: Streams, customer_id: uuid.UUID, fate: str, rng: random.Random) -> None:
    order_id = uuid.uuid4()
    lines = tuple(
        OrderLine(sku=sku, quantity=rng.randint(1, 4), unit_price=Decimal("2.50"))
        for sku in sorted(rng.sample(SKUS, rng.randint(1, 2)))
    )
    keys: dict[str, Any] = {"order_id": order_id, "customer_id": customer_id}
    total = order_total(lines)
    placed = OrderPlaced(
        **keys, customer_name="F", lines=lines, shipping_address=ADDRESS, total=total
    )
    streams.add(order_stream(order_id), placed)
    stock = tuple(StockLine(sku=ln.sku, quantity=ln.quantity) for ln in lines)
    for line in stock:
        held = StockHeld(sku=line.sku, order_id=order_id, quantity=line.quantity)
        streams.add(sku_stream(line.sku), held)
    streams.add(reservation_stream(order_id), StockReserved(order_id=order_id, lines=stock))
    paid = PaymentCharged(order_id=order_id, amount=total, reference="r")
    streams.add(payment_stream(order_id), paid)
    if fate == "confirmed":
        streams.add(reservation_stream(order_id), StockCommitted(order_id=order_id, lines=stock))
        streams.add(order_stream(order_id), OrderConfirmed(**keys, total=total))
    elif fate == "cancelled":
        refund = PaymentRefunded(order_id=order_id, amount=total, reference="f")
        streams.add(payment_stream(order_id), refund)
        released = StockReleased(order_id=order_id, lines=stock, reason="r")
        streams.add(reservation_stream(order_id), released)
        for line in stock:
            back = StockHoldReleased(sku=line.sku, order_id=order_id, quantity=line.quantity)
            streams.add(sku_stream(line.sku), back)
        streams.add(order_stream(order_id), OrderCancelled(**keys, reason="r", total=total))
    else:
        streams.add(reservation_stream(order_id), StockCommitted(order_id=order_id, lines=stock))
