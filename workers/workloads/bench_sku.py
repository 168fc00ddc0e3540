"""``sagaworks sagas bench-sku``: a SKU's load time and state size after 1k, 100k, 1M orders.

For each N, a SKU stream gets N orders' events appended directly: a hold per order, and for
every other order its release (the rest were committed, which needs no SKU event). So that
1M orders can be written to the embedded store in minutes, the events of ``N / 5000``
orders share one commit document (the inventory writes one per order): the fold reads every
event all the same, and the load after a snapshot reads the commits after it. The SKU is
then loaded the way a command loads it:
once from the whole stream (no snapshot yet: what a schema change costs, once), then, when
every size is written, from its snapshot and the commits after it (every later command),
the sizes in turn so that they meet the same machine load. Its state is measured as
stored in the snapshot, beside the size the state of the previous design (every hold and
every released order kept) would have had for the same orders.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import bson
from pymongo.database import Database

from messages import encode
from messages.inventory import StockAdded, StockHeld, StockHoldReleased
from readstore.db import Document, configure_database, get_database
from readstore.eventlog import commit_id, commits
from workers.contexts.inventory import Sku
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings
from workers.write.commands import Session
from workers.write.eventstore import EventStore
from workers.write.snapshots import SnapshotStore

BATCH = 20


def run(sizes: list[int]) -> dict[str, Any]:
    settings, embedded = Settings(), None
    if settings.mongodb():
        configure_database(settings.mongodb() or "", f"bench_sku_{uuid.uuid4().hex[:8]}")
    else:
        embedded = EmbeddedMongo.start()
        configure_database(embedded.url, f"bench_sku_{uuid.uuid4().hex[:8]}")
    database = get_database()
    try:
        EventStore(database).ensure_indexes()
        rows = []
        for n in sizes:
            rows.append(measure(database, n))
            print(rows[-1], file=sys.stderr, flush=True)  # a long run shows each size as done
        steady_loads(database, rows)
    finally:
        database.client.drop_database(database.name)
        if embedded is not None:
            embedded.stop()
    store = "configured MongoDB" if embedded is None else "embedded SecantusDB"
    return {"store": store, "rows": rows, "_text": _text(store, rows)}


def measure(database: Database[Document], orders: int) -> dict[str, Any]:
    stream = f"sku-BENCH{orders}"
    started = time.perf_counter()
    append_orders(database, stream, orders)
    appended = time.perf_counter() - started
    store = EventStore(database)
    started = time.perf_counter()
    sku = Session(store).load(Sku, stream)  # folds the stream, then stores a snapshot
    first = time.perf_counter() - started
    SnapshotStore(database).save(sku, sku.version)
    snapshot = database["snapshots"].find_one({"_id": stream}) or {}
    return {
        "orders": orders,
        "append_seconds": round(appended, 1),
        "first_load_seconds": round(first, 2),
        "state_bytes": len(bson.encode(snapshot.get("state", {}))),
        "previous_design_state_bytes": _previous_state_bytes(orders),
        "available": sku.available,
    }


def steady_loads(database: Database[Document], rows: list[dict[str, Any]], rounds: int = 7) -> None:
    """Each SKU loaded as every later command loads it (snapshot, then the commits after it),
    the sizes taken in turn within each round, so that they meet the same machine load; the
    median per size."""
    store = EventStore(database)
    times: dict[int, list[float]] = {r["orders"]: [] for r in rows}
    for _ in range(rounds):
        for orders, samples in times.items():
            started = time.perf_counter()
            Session(store).load(Sku, f"sku-BENCH{orders}")
            samples.append(time.perf_counter() - started)
    for row in rows:
        row["load_ms"] = round(statistics.median(times[row["orders"]]) * 1000, 2)


def append_orders(database: Database[Document], stream: str, orders: int) -> None:
    collection, version = commits(database), 1
    now = datetime.now(UTC)
    added = StockAdded(sku=stream, quantity=orders * 2)
    docs = [_commit(stream, 1, [encode(added)], None, now)]
    per_commit = max(1, orders // 5000)
    for start in range(0, orders, per_commit):
        events = [
            e for i in range(start, min(start + per_commit, orders)) for e in _order(stream, i)
        ]
        docs.append(_commit(stream, version + 1, events, str(uuid.uuid4()), now))
        version += len(events)
        if len(docs) >= BATCH:
            collection.insert_many(docs, ordered=False)
            docs = []
    if docs:
        collection.insert_many(docs, ordered=False)


def _order(stream: str, i: int) -> list[Document]:
    order_id = uuid.uuid4()
    events = [encode(StockHeld(sku=stream, order_id=order_id, quantity=1))]
    if i % 2:
        events.append(encode(StockHoldReleased(sku=stream, order_id=order_id, quantity=1)))
    return events


def _commit(
    stream: str, first: int, events: list[Document], command_id: str | None, now: datetime
) -> Document:
    for event in events:
        event.pop("stream_id", None)
    return {
        "_id": commit_id(stream, first),
        "stream_id": stream,
        "version_from": first,
        "version": first + len(events) - 1,
        "events": events,
        "committed_at": now,
        "dispatched": True,
        "command_id": command_id,
    }


def _previous_state_bytes(orders: int) -> int:
    """The previous ``Sku`` state: every committed order's hold and every released order."""
    holds = {str(uuid.uuid4()): 1 for _ in range(orders // 2 + orders % 2)}
    closed = [str(uuid.uuid4()) for _ in range(orders // 2)]
    state = {"added": orders * 2, "held": orders, "released": orders // 2}
    return len(bson.encode({**state, "holds": holds, "closed": closed}))


def _text(store: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"sagaworks sagas bench-sku ({store})", ""]
    lines.append(
        f"{'orders':>9} {'append s':>9} {'first load s':>13} {'load ms':>8} "
        f"{'state B':>8} {'previous design B':>18}"
    )
    for r in rows:
        lines.append(
            f"{r['orders']:>9} {r['append_seconds']:>9} {r['first_load_seconds']:>13} "
            f"{r['load_ms']:>8} {r['state_bytes']:>8} {r['previous_design_state_bytes']:>18}"
        )
    return "\n".join(lines)
