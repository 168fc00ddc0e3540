"""Read-side figures: snapshot loads (50 vs 5,000 events), rebuild throughput, query cache.

Run ``python -m workers.workloads.bench_read`` (embedded SecantusDB unless
SAGAWORKS_MONGODB_URL is set).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pymongo.database import Database

from messages import Event
from messages.customers import CustomerRegistered, customer_stream
from messages.inventory import StockAdded, StockHeld, StockHoldReleased, sku_stream
from messages.orders import Address, OrderConfirmed, OrderLine, OrderPlaced, order_stream
from readstore.analytics import OrderAnalytics, revenue_by_day, top_products
from readstore.cache import query_cache
from readstore.customers import CustomerProfiles
from readstore.db import Document, connect, set_database
from readstore.orders import OrderSummaries
from readstore.projection import Projection
from readstore.rebuild import Rebuild
from workers.contexts.inventory import Sku
from workers.runtime.embedded import EmbeddedMongo
from workers.write import snapshots
from workers.write.commands import Session
from workers.write.eventstore import EventStore, _stored

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


def seed_orders(database: Database[Document], orders: int) -> int:
    """Customers and orders (placed, two in three confirmed) as bulk-inserted commits."""
    docs: list[Document] = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    customers = [uuid.uuid4() for _ in range(max(orders // 10, 1))]
    for i, customer_id in enumerate(customers):
        registered = CustomerRegistered(
            customer_id=customer_id,
            full_name=f"C{i}",
            email=f"c{i}@example.com",
            payment_limit=Decimal(1000),
            marketing_opt_in=bool(i % 2),
            occurred_at=start,
        )
        docs.append(_commit(customer_stream(customer_id), 1, registered, start))
    for i in range(orders):
        docs += _order(customers[i % len(customers)], start + timedelta(hours=i), i)
    for begin in range(0, len(docs), 1000):
        database["commits"].insert_many(docs[begin : begin + 1000])
    return sum(len(d["events"]) for d in docs)


def _order(customer_id: uuid.UUID, at: datetime, i: int) -> list[Document]:
    order_id = uuid.uuid4()
    line = OrderLine(sku=f"SKU-{i % 50}", quantity=1 + i % 3, unit_price=Decimal("2.50"))
    keys: dict[str, Any] = {"order_id": order_id, "customer_id": customer_id}
    placed = OrderPlaced(
        **keys,
        customer_name="C",
        lines=(line,),
        shipping_address=ADDRESS,
        total=line.amount,
        occurred_at=at,
    )
    stream = order_stream(order_id)
    docs = [_commit(stream, 1, placed, at)]
    if i % 3:
        docs.append(_commit(stream, 2, OrderConfirmed(**keys, total=line.amount), at))
    return docs


def rebuild_figures(database: Database[Document], orders: int) -> dict[str, Any]:
    events = seed_orders(database, orders)
    figures: dict[str, Any] = {"events_in_store": events}
    kinds: tuple[type[Projection], ...] = (OrderAnalytics, OrderSummaries, CustomerProfiles)
    for kind in kinds:
        outcome = Rebuild(database, kind, margin=timedelta(0)).run()
        figures[f"{kind.name}_events_per_s"] = round(outcome.rate)
        figures[f"{kind.name}_seconds"] = round(outcome.seconds, 2)
    live = OrderAnalytics(database, collection="bench_one_by_one")
    query = {"stream_id": {"$regex": "^order-"}}
    sample = [e for c in database["commits"].find(query).limit(500) for e in _events(c)]
    began = time.perf_counter()
    for event in sample:
        live.apply(event)
    figures["one_by_one_apply_events_per_s"] = round(len(sample) / (time.perf_counter() - began))
    return figures


def _events(doc: Document) -> tuple[Event, ...]:
    from readstore.eventlog import Commit  # noqa: PLC0415

    return Commit.from_document(doc).events


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
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args(argv)
    server = EmbeddedMongo.start()
    try:
        database = connect(server.url, f"readbench_{uuid.uuid4().hex[:8]}")
        set_database(database)
        EventStore(database).ensure_indexes()
        report = {
            "store": "embedded SecantusDB",
            "snapshots": snapshot_figures(database),
            "rebuild": rebuild_figures(database, args.orders),
            "cache": cache_figures(),
        }
        print(json.dumps(report, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
