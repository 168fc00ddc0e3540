"""Read-side figures: snapshot loads, rebuild throughput next to ``insert_many``, query cache,
and one customer's profile size after many orders.

Run ``python -m workers.workloads.bench_read`` (embedded SecantusDB unless
SAGAWORKS_MONGODB_URL is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import bson
from bson.decimal128 import Decimal128
from pymongo.database import Database

from messages import Event
from messages.customers import CustomerRegistered, customer_stream
from messages.inventory import (
    StockAdded,
    StockCommitted,
    StockHeld,
    StockHoldReleased,
    StockLine,
    StockReserved,
    reservation_stream,
    sku_stream,
)
from messages.orders import Address, OrderConfirmed, OrderLine, OrderPlaced, order_stream
from messages.payments import PaymentCharged, payment_stream
from readstore.analytics import (
    CustomerRegistrations,
    OrderAnalytics,
    revenue_by_day,
    top_products,
)
from readstore.cache import query_cache
from readstore.customers import CustomerProfiles
from readstore.db import Document, connect, set_database
from readstore.inventory import InventoryLevels
from readstore.orders import OrderSummaries
from readstore.projection import Projection
from readstore.rebuild import Rebuild
from workers.contexts.inventory import Sku
from workers.runtime.embedded import EmbeddedMongo
from workers.write import snapshots
from workers.write.commands import Session
from workers.write.eventstore import EventStore, _stored

PROJECTION_KINDS: tuple[type[Projection], ...] = (
    OrderSummaries,
    CustomerProfiles,
    InventoryLevels,
    OrderAnalytics,
    CustomerRegistrations,
)
ADDRESS = Address(name="B", street="1 St", city="C", postal_code="1", country="US")


def _commit(stream: str, version: int, event: Event, at: datetime) -> Document:
    return {
        "_id": f"{stream}@{version:010d}",
        "stream_id": stream,
        "version_from": version,
        "version": version,
        "events": [_stored(event)],
        "command_id": str(uuid.uuid4()),
        "committed_at": at,
        "dispatched": True,
    }


def _sku_events(sku: str, count: int) -> Iterator[Event]:
    yield StockAdded(sku=sku, quantity=1_000_000)
    for i in range(1, count):
        order_id = uuid.UUID(int=i // 2)
        if i % 2:
            yield StockHeld(sku=sku, order_id=order_id, quantity=1)
        else:
            yield StockHoldReleased(sku=sku, order_id=order_id, quantity=1)


def seed_sku(database: Database[Document], sku: str, count: int) -> str:
    """A SKU stream of ``count`` one-event commits, inserted in bulk."""
    stream, now = sku_stream(sku), datetime.now(UTC)
    docs = [_commit(stream, v, e, now) for v, e in enumerate(_sku_events(sku, count), 1)]
    for start in range(0, len(docs), 1000):
        database["commits"].insert_many(docs[start : start + 1000])
    return stream


def _timed(fn: Callable[[], Any], runs: int) -> float:
    """The median of ``runs`` timings of ``fn`` in milliseconds."""
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(samples), 2)


def snapshot_figures(database: Database[Document], runs: int = 15) -> dict[str, Any]:
    store = EventStore(database)
    streams = {n: seed_sku(database, f"BENCH-{n}", n) for n in (50, 5000)}
    figures: dict[str, Any] = {}
    for n, stream in streams.items():

        def load(stream: str = stream) -> Sku:
            return Session(store).load(Sku, stream)

        snapshots.configure({"sku": 0})
        figures[f"{n}_events_no_snapshot_ms"] = _timed(load, runs)
        snapshots.configure({"sku": 100})
        load()  # takes the snapshot (due at load)
        loaded = load()
        figures[f"{n}_events_snapshot_ms"] = _timed(load, runs)
        figures[f"{n}_events_read_after_snapshot"] = loaded.version - loaded.snapshot_version
    snapshots.configure({})
    return figures


def _fulfilled(customer_id: uuid.UUID, at: datetime, i: int) -> Iterator[tuple[str, Event]]:
    """One confirmed order's events on every stream kind: order, SKU, reservation, payment."""
    order_id = uuid.uuid4()
    line = OrderLine(sku=f"SKU-{i % 50}", quantity=1 + i % 3, unit_price=Decimal("2.50"))
    keys: dict[str, Any] = {"order_id": order_id, "customer_id": customer_id}
    stock = (StockLine(sku=line.sku, quantity=line.quantity),)
    yield (
        order_stream(order_id),
        OrderPlaced(
            **keys,
            customer_name="C",
            lines=(line,),
            shipping_address=ADDRESS,
            total=line.amount,
            occurred_at=at,
        ),
    )
    yield sku_stream(line.sku), StockHeld(sku=line.sku, order_id=order_id, quantity=line.quantity)
    yield reservation_stream(order_id), StockReserved(order_id=order_id, lines=stock)
    yield (
        payment_stream(order_id),
        PaymentCharged(order_id=order_id, amount=line.amount, reference="r"),
    )
    yield reservation_stream(order_id), StockCommitted(order_id=order_id, lines=stock)
    yield order_stream(order_id), OrderConfirmed(**keys, total=line.amount, occurred_at=at)


def seed_orders(database: Database[Document], events: int, customers: int = 0) -> int:
    """About ``events`` events of confirmed orders (and their customers) as bulk commits."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    orders = max(events // 6, 1)
    people = [uuid.uuid4() for _ in range(customers or max(orders // 10, 1))]
    versions: dict[str, int] = {}
    docs: list[Document] = []

    def add(stream: str, event: Event) -> None:
        versions[stream] = versions.get(stream, 0) + 1
        docs.append(_commit(stream, versions[stream], event, start))

    for i, customer_id in enumerate(people):
        add(customer_stream(customer_id), _registered(customer_id, i, start))
    for sku in range(50):
        add(sku_stream(f"SKU-{sku}"), StockAdded(sku=f"SKU-{sku}", quantity=10_000_000))
    for i in range(orders):
        for stream, event in _fulfilled(people[i % len(people)], start + timedelta(minutes=i), i):
            add(stream, event)
    for begin in range(0, len(docs), 2000):
        database["commits"].insert_many(docs[begin : begin + 2000], ordered=False)
    return len(docs)


def _registered(customer_id: uuid.UUID, i: int, at: datetime) -> CustomerRegistered:
    return CustomerRegistered(
        customer_id=customer_id,
        full_name=f"C{i}",
        email=f"c{i}@example.com",
        payment_limit=Decimal(1000),
        marketing_opt_in=bool(i % 2),
        occurred_at=at,
    )


def insert_many_rate(database: Database[Document], documents: int = 20_000) -> float:
    """Documents per second ``insert_many`` writes (unordered, 2,000 a call), summary-sized."""
    docs = [
        {
            "_id": str(uuid.uuid4()),
            "status": "confirmed",
            "customer_id": str(uuid.uuid4()),
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": Decimal128("2.50")}],
            "total": Decimal128("2.50"),
            "placed_at": datetime.now(UTC),
            "_version": 2,
        }
        for _ in range(documents)
    ]
    began = time.perf_counter()
    for start in range(0, documents, 2000):
        database["bench_insert_many"].insert_many(docs[start : start + 2000], ordered=False)
    rate = documents / (time.perf_counter() - began)
    database.drop_collection("bench_insert_many")
    return rate


def rebuild_figures(database: Database[Document], events: int) -> dict[str, Any]:
    commits = seed_orders(database, events)
    figures: dict[str, Any] = {"commits_in_store": commits}
    figures["insert_many_docs_per_s"] = round(insert_many_rate(database))
    for kind in PROJECTION_KINDS:
        outcome = Rebuild(database, kind, settle_seconds=0).run()
        figures[kind.name] = {
            "events": outcome.events,
            "documents": outcome.documents,
            "seconds": round(outcome.seconds, 2),
            "events_per_s": round(outcome.rate),
            "documents_per_s": round(outcome.documents / outcome.seconds),
            "load_after": os.getloadavg()[0],
        }
    figures["insert_many_docs_per_s_after"] = round(insert_many_rate(database))
    insert_many = (figures["insert_many_docs_per_s"] + figures["insert_many_docs_per_s_after"]) / 2
    largest = max(PROJECTION_KINDS, key=lambda k: figures[k.name]["documents"]).name
    figures["largest_events_per_s_over_insert_many"] = round(
        figures[largest]["events_per_s"] / insert_many, 2
    )
    return figures


def profile_figures(database: Database[Document], orders: int) -> dict[str, Any]:
    """A customer with ``orders`` confirmed orders: the profile's size, one more order live."""
    seed_orders(database, orders * 6, customers=1)
    Rebuild(database, CustomerProfiles, settle_seconds=0).run()
    (doc,) = database[CustomerProfiles.collection_name].find()
    size = len(bson.encode(doc))
    customer_id = uuid.UUID(doc["_id"])
    events = list(_fulfilled(customer_id, datetime.now(UTC), orders))
    live = CustomerProfiles(database)
    began = time.perf_counter()
    for stream, event in events:
        if isinstance(event, live.handles):
            live.apply(
                event.model_copy(
                    update={
                        "stream_id": stream,
                        "stream_version": 1 + isinstance(event, OrderConfirmed),
                    }
                )
            )
    apply_ms = (time.perf_counter() - began) * 1000 / 2
    after = database[CustomerProfiles.collection_name].find_one({"_id": doc["_id"]}) or {}
    return {
        "orders": after.get("orders_placed"),
        "profile_bytes": size,
        "profile_bytes_after_one_more": len(bson.encode(after)),
        "live_apply_ms_per_order_event": round(apply_ms, 1),
    }


def cache_figures(runs: int = 50) -> dict[str, Any]:
    query_cache.clear()

    def cold() -> None:
        query_cache.clear()
        top_products()

    miss = _timed(cold, runs)
    top_products()
    hit = _timed(top_products, runs)
    revenue_by_day()
    return {"top_products_miss_ms": miss, "top_products_hit_ms": hit, **query_cache.stats()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events to rebuild from")
    parser.add_argument("--profile-orders", type=int, default=10_000, help="one customer's")
    parser.add_argument("--skip-snapshots", action="store_true")
    args = parser.parse_args(argv)
    server = EmbeddedMongo.start()
    try:
        database = connect(server.url, f"readbench_{uuid.uuid4().hex[:8]}")
        set_database(database)
        EventStore(database).ensure_indexes()
        report: dict[str, Any] = {"store": "embedded SecantusDB", "load": os.getloadavg()[0]}
        if not args.skip_snapshots:
            report["snapshots"] = snapshot_figures(database)
        report["rebuild"] = rebuild_figures(database, args.events)
        report["cache"] = cache_figures()
        profiles = connect(server.url, f"readbench_{uuid.uuid4().hex[:8]}")
        EventStore(profiles).ensure_indexes()
        report["profile"] = profile_figures(profiles, args.profile_orders)
        report["load_at_end"] = os.getloadavg()[0]
        print(json.dumps(report, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
