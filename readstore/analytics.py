"""Dashboard analytics: per-order and per-customer rows, aggregated at query time.

Every row is per-stream (one order, one customer) and written by the idempotent,
per-stream-ordered projection algorithm, so redeliveries and out-of-order deliveries cannot
count twice. Cross-stream figures (revenue per day, top products, registrations per day) are
sums over those rows, computed by MongoDB's aggregation pipeline when asked, never kept as
counters. Answers are cached in process and invalidated by each model's change counter,
bumped in the bulk write of every apply (see ``readstore.cache``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pymongo.database import Database

from messages import Event
from messages.customers import CustomerRegistered
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from readstore.cache import VERSION_ID, bump, query_cache
from readstore.consistency import Answer, ConsistencyToken
from readstore.db import Document, get_database
from readstore.follows import Follow
from readstore.mongo import from_mongo, money
from readstore.projection import Projection, Update
from readstore.steps import Step

POSITION = "_version"


def day(at: datetime) -> str:
    return at.date().isoformat()


#: Every query leaves the change counter's document out.
ROWS = {"_id": {"$ne": VERSION_ID}}


class _CountedProjection(Projection):
    """A projection that bumps its model's change counter with every apply to the live model."""

    def touched(self) -> list[Step]:
        return [bump(self.collection.name)]


class OrderAnalytics(_CountedProjection):
    name = "order_analytics"
    collection_name = "order_analytics"
    handles: ClassVar[tuple[type[Event], ...]] = (OrderPlaced, OrderConfirmed, OrderCancelled)
    follows = (Follow("order", POSITION),)

    def change(self, event: Event) -> Update:
        match event:
            case OrderPlaced():
                return {"$set": _placed(event)}
            case OrderConfirmed():
                at = event.occurred_at
                return {"$set": {"status": "confirmed", "confirmed_at": at, "day": day(at)}}
            case OrderCancelled():
                return {"$set": {"status": "cancelled"}}
        return {}

    def indexes(self) -> None:
        self.collection.create_index([("status", 1), ("day", 1)])
        self.collection.create_index([("placed_day", 1)])


def _placed(event: OrderPlaced) -> dict[str, Any]:
    return {
        "status": "pending",
        "customer_id": str(event.customer_id),
        "placed_day": day(event.occurred_at),
        "total": money(event.total),
        "lines": [
            {"sku": ln.sku, "quantity": ln.quantity, "revenue": money(ln.amount)}
            for ln in event.lines
        ],
    }


class CustomerRegistrations(_CountedProjection):
    name = "customer_registrations"
    collection_name = "customer_registrations"
    handles: ClassVar[tuple[type[Event], ...]] = (CustomerRegistered,)
    follows = (Follow("customer", POSITION),)

    def change(self, event: Event) -> Update:
        if isinstance(event, CustomerRegistered):
            return {"$set": {"day": day(event.occurred_at), "opt_in": event.marketing_opt_in}}
        return {}

    def indexes(self) -> None:
        self.collection.create_index([("day", 1)])


# -- answers ---------------------------------------------------------------------------------


class DailyRevenue(BaseModel):
    model_config = ConfigDict(frozen=True)
    day: date
    orders: int
    revenue: Decimal


class StatusCount(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: str
    orders: int


class ProductSales(BaseModel):
    model_config = ConfigDict(frozen=True)
    sku: str
    quantity: int
    revenue: Decimal


class DailyRegistrations(BaseModel):
    model_config = ConfigDict(frozen=True)
    day: date
    customers: int
    opted_in: int


def _days(start: date | None, end: date | None) -> dict[str, str]:
    bounds = {}
    if start is not None:
        bounds["$gte"] = start.isoformat()
    if end is not None:
        bounds["$lte"] = end.isoformat()
    return bounds


def _range(field: str, start: date | None, end: date | None) -> dict[str, Any]:
    bounds = _days(start, end)
    return {field: bounds} if bounds else {}


def _run(database: Database[Document], collection: str, pipeline: list[Any]) -> list[Any]:
    return [from_mongo(doc) for doc in database[collection].aggregate(pipeline)]


def _reached(database: Database[Document], collection: str, token: ConsistencyToken) -> bool:
    """Whether the model holds ``token``'s write (tokens of streams it doesn't follow pass)."""
    kind, _, stream_key = token.stream_id.partition("-")
    if (kind, collection) not in {
        ("order", "order_analytics"),
        ("customer", "customer_registrations"),
    }:
        return True
    doc = database[collection].find_one({"_id": stream_key}, {POSITION: 1})
    return doc is not None and int(doc.get(POSITION, 0)) >= token.version


def _cached(
    projection: type[Projection],
    query: str,
    args: tuple[Any, ...],
    pipeline: list[Any],
    token: ConsistencyToken | None,
) -> Answer[list[Any]]:
    database = get_database()
    name = projection.collection_name
    return query_cache.answer(
        database,
        projection.name,
        (query, args),
        lambda: _run(database, name, pipeline),
        token=token,
        reached=lambda t: _reached(database, name, t),
    )


def revenue_by_day(
    start: date | None = None, end: date | None = None, token: ConsistencyToken | None = None
) -> Answer[list[DailyRevenue]]:
    """Confirmed orders and their revenue per day of confirmation, oldest day first."""
    pipeline = [
        {"$match": {**ROWS, "status": "confirmed", **_range("day", start, end)}},
        {"$group": {"_id": "$day", "orders": {"$sum": 1}, "revenue": {"$sum": "$total"}}},
        {"$sort": {"_id": 1}},
    ]
    answer = _cached(OrderAnalytics, "revenue_by_day", (start, end), pipeline, token)
    rows = [
        DailyRevenue(day=r["_id"], orders=r["orders"], revenue=r["revenue"]) for r in answer.value
    ]
    return Answer(rows, answer.stale)


def orders_by_status(
    start: date | None = None, end: date | None = None, token: ConsistencyToken | None = None
) -> Answer[list[StatusCount]]:
    """Orders placed in the range, counted by their current status."""
    pipeline = [
        {"$match": {**ROWS, **_range("placed_day", start, end)}},
        {"$group": {"_id": "$status", "orders": {"$sum": 1}}},
        {"$sort": {"_id": 1}},
    ]
    answer = _cached(OrderAnalytics, "orders_by_status", (start, end), pipeline, token)
    rows = [StatusCount(status=r["_id"], orders=r["orders"]) for r in answer.value]
    return Answer(rows, answer.stale)


def top_products(
    start: date | None = None,
    end: date | None = None,
    by: Literal["quantity", "revenue"] = "quantity",
    limit: int = 10,
    token: ConsistencyToken | None = None,
) -> Answer[list[ProductSales]]:
    """The best-selling products of confirmed orders in the range, by quantity or revenue."""
    pipeline = [
        {"$match": {**ROWS, "status": "confirmed", **_range("day", start, end)}},
        {"$unwind": "$lines"},
        {
            "$group": {
                "_id": "$lines.sku",
                "quantity": {"$sum": "$lines.quantity"},
                "revenue": {"$sum": "$lines.revenue"},
            }
        },
        {"$sort": {by: -1, "_id": 1}},
        {"$limit": max(1, min(limit, 1000))},
    ]
    answer = _cached(OrderAnalytics, "top_products", (start, end, by, limit), pipeline, token)
    rows = [
        ProductSales(sku=r["_id"], quantity=r["quantity"], revenue=r["revenue"])
        for r in answer.value
    ]
    return Answer(rows, answer.stale)


def registrations_by_day(
    start: date | None = None, end: date | None = None, token: ConsistencyToken | None = None
) -> Answer[list[DailyRegistrations]]:
    """Customers registered per day, and how many of them opted in to marketing."""
    pipeline = [
        {"$match": {**ROWS, **_range("day", start, end)}},
        {
            "$group": {
                "_id": "$day",
                "customers": {"$sum": 1},
                "opted_in": {"$sum": {"$cond": ["$opt_in", 1, 0]}},
            }
        },
        {"$sort": {"_id": 1}},
    ]
    answer = _cached(CustomerRegistrations, "registrations_by_day", (start, end), pipeline, token)
    rows = [
        DailyRegistrations(day=r["_id"], customers=r["customers"], opted_in=r["opted_in"])
        for r in answer.value
    ]
    return Answer(rows, answer.stale)
