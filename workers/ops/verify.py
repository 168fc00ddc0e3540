"""Checks that the read models agree with a recomputation from the event store."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pymongo.database import Database

from messages.customers import CustomerRegistered
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from readstore.customers import CustomerProfile, CustomerProfiles
from readstore.db import Document
from readstore.eventlog import iter_commits
from readstore.mongo import from_mongo
from readstore.orders import OrderSummaries


@dataclass
class Report:
    checked: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.differences


def expected_models(database: Database[Document]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Order summaries and customer profiles computed from the events alone."""
    orders: dict[str, dict[str, Any]] = {}
    customers: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "orders_placed": 0,
            "orders_confirmed": 0,
            "orders_cancelled": 0,
            "total_spent": Decimal("0"),
        }
    )
    for commit in iter_commits(database):
        for event in commit.events:
            match event:
                case CustomerRegistered():
                    customers[str(event.customer_id)]["name"] = event.full_name
                case OrderPlaced():
                    orders[str(event.order_id)] = {
                        "status": "pending",
                        "total": event.total,
                        "version": event.stream_version,
                    }
                    customers[str(event.customer_id)]["orders_placed"] += 1
                case OrderConfirmed():
                    orders[str(event.order_id)].update(
                        status="confirmed", version=event.stream_version
                    )
                    customers[str(event.customer_id)]["orders_confirmed"] += 1
                    customers[str(event.customer_id)]["total_spent"] += event.total
                case OrderCancelled():
                    orders[str(event.order_id)].update(
                        status="cancelled", version=event.stream_version
                    )
                    customers[str(event.customer_id)]["orders_cancelled"] += 1
    return orders, dict(customers)


def verify_read_models(database: Database[Document]) -> Report:
    """Compare ``order_summary`` and ``customer_profile`` with the event store, field by field."""
    report = Report()
    orders, customers = expected_models(database)
    actual_orders = {
        d["_id"]: from_mongo(d) for d in database[OrderSummaries.collection_name].find()
    }
    for order_id, want in orders.items():
        have = actual_orders.pop(order_id, None) or {}
        got = {
            "status": have.get("status"),
            "total": have.get("total"),
            "version": have.get("_version"),
        }
        _compare(report, f"order {order_id}", want, got)
    report.differences += [
        f"order {oid}: in the read model, not in the store" for oid in actual_orders
    ]
    actual = {
        d["_id"]: CustomerProfile.from_document(d).model_dump()
        for d in database[CustomerProfiles.collection_name].find()
    }
    for customer_id, want in customers.items():
        have = actual.get(customer_id) or {}
        _compare(report, f"customer {customer_id}", want, {k: have.get(k) for k in want})
    return report


def _compare(report: Report, what: str, want: dict[str, Any], got: dict[str, Any]) -> None:
    report.checked += 1
    for key, value in want.items():
        if got.get(key) != value:
            report.differences.append(f"{what}: {key} is {got.get(key)!r}, events say {value!r}")
