"""Regressions from operating the read side on a store with confirmed orders."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest
from pymongo import MongoClient, monitoring

from messages.inventory import (
    StockAdded,
    StockCommitted,
    StockHeld,
    StockLine,
    StockReserved,
    reservation_stream,
    sku_stream,
)
from messages.orders import OrderConfirmed, order_stream
from readstore.analytics import CustomerRegistrations
from readstore.consistency import ConsistencyToken
from readstore.customers import CustomerProfiles, get_customer_profile
from readstore.eventlog import commit_id, read_stream
from readstore.inventory import InventoryLevels
from readstore.lag import projection_lag
from readstore.lease import RebuildRefused, acquire
from readstore.linked import ENDED, KEPT_ENDED
from readstore.orders import OrderSummaries, get_order
from readstore.projection import Projection
from readstore.rebuild import Rebuild
from readstore.verify import verify_projection
from tests.readside import Streams, fulfil, seed_history
from workers.write.eventstore import EventStore, _stored


def seed_fulfilled_order(store: EventStore) -> tuple[uuid.UUID, uuid.UUID, Streams]:
    """One order with stock committed but not yet confirmed (its saga is mid-way)."""
    streams = Streams(store)
    customer_id = uuid.uuid4()
    fulfil(streams, customer_id, "in flight", random.Random(1))
    order_stream_id = next(s for s in streams.versions if s.startswith("order-"))
    return uuid.UUID(order_stream_id.removeprefix("order-")), customer_id, streams


def test_inventory_lag_and_rebuild_work_with_reservation_events(database):
    # Given an order whose stock was reserved and committed (events that carry no SKU)
    seed_fulfilled_order(EventStore(database))

    # When the inventory levels' lag is measured, then the model is rebuilt
    lag = projection_lag(InventoryLevels(database))
    Rebuild(database, InventoryLevels, settle_seconds=0).run()

    # Then both worked: the lag counted every followed stream, the rebuild counts the commit
    assert lag.streams >= 1 and lag.behind == lag.committed
    assert projection_lag(InventoryLevels(database)).behind == 0
    levels = list(database.inventory_levels.find())
    assert sum(doc.get("committed", 0) for doc in levels) > 0


def test_an_order_rebuilt_mid_fulfilment_still_takes_its_confirmation(database):
    # Given an order between stock commit and confirmation, and order_summary rebuilt then
    store = EventStore(database)
    order_id, customer_id, streams = seed_fulfilled_order(store)
    Rebuild(database, OrderSummaries, settle_seconds=0).run()

    # When the order is confirmed and the confirmation is applied live
    total = get_order(order_id).value.total
    confirmed = OrderConfirmed(order_id=order_id, customer_id=customer_id, total=total)
    streams.add(order_stream(order_id), confirmed)
    [_, event] = read_stream(database, order_stream(order_id))
    OrderSummaries(database).apply(event)

    # Then the summary is confirmed
    assert get_order(order_id).value.status == "confirmed"


def test_a_second_rebuild_is_refused_with_its_holder_and_since(database):
    # Given a rebuild of order_summary that holds its lease
    lease = acquire(database, OrderSummaries.name, "order_summary__rebuild_x")

    # When another rebuild starts
    with pytest.raises(RebuildRefused) as refused:
        Rebuild(database, OrderSummaries, settle_seconds=0).run()

    # Then it is refused, naming who holds the lease and since when
    assert lease.holder in str(refused.value)
    assert refused.value.since.replace(microsecond=0) == lease.since.replace(microsecond=0)


def test_a_dead_holders_lease_expires(database):
    # Given a lease whose holder stopped renewing it
    acquire(database, OrderSummaries.name, "order_summary__rebuild_dead", ttl=timedelta(0))

    # When a rebuild starts
    outcome = Rebuild(database, OrderSummaries, settle_seconds=0).run()

    # Then it took the lease over and swapped
    assert outcome.swapped


def commit_doc(stream: str, version: int, event: Any) -> dict[str, Any]:
    return {
        "_id": commit_id(stream, version),
        "stream_id": stream,
        "version_from": version,
        "version": version,
        "events": [_stored(event)],
        "committed_at": datetime.now(UTC),
        "dispatched": True,
    }


def test_a_commit_redelivered_after_many_others_is_counted_once(database):
    # Given a SKU whose 1,001 holds were each committed (more than any window of commit ids),
    # built by a rebuild from the log
    docs, first = [], None
    for version in range(1, 1002):
        order_id = uuid.uuid4()
        docs.append(
            commit_doc(
                sku_stream("OLD"), version, StockHeld(sku="OLD", order_id=order_id, quantity=1)
            )
        )
        commit = StockCommitted(order_id=order_id, lines=(StockLine(sku="OLD", quantity=1),))
        docs.append(commit_doc(reservation_stream(order_id), 1, commit))
        first = first or (reservation_stream(order_id), commit)
    database.commits.insert_many(docs)
    Rebuild(database, InventoryLevels, settle_seconds=0).run()

    # When the very first commit is delivered again
    stream, commit = first
    InventoryLevels(database).apply(
        commit.model_copy(update={"stream_id": stream, "stream_version": 1})
    )

    # Then it is not counted twice
    assert database.inventory_levels.find_one({"_id": "OLD"})["committed"] == 1001


def profile_size(database: Any, customer_id: uuid.UUID) -> int:
    return len(bson.encode(database.customer_profile.find_one({"_id": str(customer_id)})))


def test_a_customer_profile_does_not_grow_with_their_orders(database):
    # Given a customer with 20 orders applied live (more than the profile keeps ended)
    streams = Streams(EventStore(database))
    customer_id, rng = uuid.uuid4(), random.Random(3)
    profiles = CustomerProfiles(database)

    def orders(count: int) -> None:
        for _ in range(count):
            fulfil(streams, customer_id, "confirmed", rng)
        for stream in [s for s in streams.versions if s.startswith("order-")]:
            for event in read_stream(database, stream):
                profiles.apply(event)

    orders(20)
    assert len(database.customer_profile.find_one({"_id": str(customer_id)})[ENDED]) == KEPT_ENDED
    after_20 = profile_size(database, customer_id)

    # When 20 more are applied
    orders(20)

    # Then the profile counts 40 orders in the same size
    assert database.customer_profile.find_one({"_id": str(customer_id)})["orders_placed"] == 40
    assert profile_size(database, customer_id) == after_20


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []
        self.targets: list[tuple[str, Any]] = []
        self.commits_read = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)
        self.targets.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor", {})
        if cursor.get("ns", "").endswith(".commits"):
            self.commits_read += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def rebuild_listened(mongo_url: str, name: str, kind: type[Projection]) -> Commands:
    listener = Commands()
    client: MongoClient[Any] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[listener]
    )
    Rebuild(client[name], kind, settle_seconds=0).run()
    client.close()
    return listener


def rebuild_commands(mongo_url: str, name: str) -> int:
    return len(rebuild_listened(mongo_url, name, OrderSummaries).names)


def test_a_rebuild_makes_round_trips_by_batch_not_by_event(mongo_url, database):
    # Given a store with 30 orders through fulfilment, and the round trips to rebuild them
    store = EventStore(database)
    rng = random.Random(2)
    streams = Streams(store)
    for _ in range(30):
        fulfil(streams, uuid.uuid4(), "confirmed", rng)
    small = rebuild_commands(mongo_url, database.name)

    # When 60 more orders are added and it is rebuilt again
    for _ in range(60):
        fulfil(streams, uuid.uuid4(), "confirmed", rng)
    large = rebuild_commands(mongo_url, database.name)

    # Then the round trips did not grow with the events (large batches, bulk writes)
    assert large <= small + 2, (small, large)


def test_a_rebuild_reads_only_the_streams_its_projection_follows(mongo_url, database):
    # Given customers and their orders through fulfilment, on every kind of stream
    seed_history(EventStore(database), orders=10)
    customer_commits = database.commits.count_documents({"stream_id": {"$regex": "^customer-"}})

    # When the registrations, which follow customer streams only, are rebuilt
    listener = rebuild_listened(mongo_url, database.name, CustomerRegistrations)

    # Then the rebuild read the customers' commits and no other
    assert 0 < customer_commits < database.commits.count_documents({})
    assert listener.commits_read == customer_commits


def test_a_stock_commit_delivered_after_its_reservation_reads_no_stream(mongo_url, database):
    # Given an order's stock reserved, then committed, and the SKUs' holds applied
    store = EventStore(database)
    order_id, _, _ = seed_fulfilled_order(store)
    reserved, committed = read_stream(database, reservation_stream(order_id))
    for line in committed.lines:
        for event in read_stream(database, sku_stream(line.sku)):
            InventoryLevels(database).apply(event)
    listener = Commands()
    client: MongoClient[Any] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[listener]
    )
    live = InventoryLevels(client[database.name])

    # When those of its types the projection's queue is subscribed to are applied in order
    delivered = [e for e in (reserved, committed) if isinstance(e, InventoryLevels.handles)]
    applied = [live.apply(event) for event in delivered]
    client.close()

    # Then each was one write in turn: no gap to fill from the event store
    assert applied == [True, True]
    assert ("find", "commits") not in listener.targets, listener.targets


def profile_commands(mongo_url: str, database: Any, events: list[Any]) -> int:
    """The store commands on the profile's collection to apply ``events`` one by one."""
    listener = Commands()
    applied_listened(mongo_url, database, listener, events)
    return len([name for name, target in listener.targets if target == "customer_profile"])


def applied_listened(
    mongo_url: str, database: Any, listener: monitoring.CommandListener, events: list[Any]
) -> None:
    """Apply ``events`` to the profiles one by one, on a client ``listener`` watches."""
    client: MongoClient[Any] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[listener]
    )
    profiles = CustomerProfiles(client[database.name])
    for event in events:
        assert profiles.apply(event)
    client.close()


def test_a_profiles_work_per_event_does_not_grow_with_the_customers_orders(mongo_url, database):
    # Given a customer with 2 orders applied, and 40 more in the store
    streams = Streams(EventStore(database))
    customer_id, rng = uuid.uuid4(), random.Random(5)
    for _ in range(42):
        fulfil(streams, customer_id, "confirmed", rng)
    orders = [s for s in streams.versions if s.startswith("order-")]
    by_order = [read_stream(database, stream) for stream in orders]
    profiles = CustomerProfiles(database)
    for event in [e for events in by_order[:1] for e in events]:
        profiles.apply(event)

    # When the second order is applied, then the 40 after it, then the last
    second = profile_commands(mongo_url, database, by_order[1])
    for event in [e for events in by_order[2:41] for e in events]:
        profiles.apply(event)
    last = profile_commands(mongo_url, database, by_order[41])

    # Then the last order took as many store commands as the second: one per event
    assert last == second == len(by_order[41])
    assert database.customer_profile.find_one({"_id": str(customer_id)})["orders_placed"] == 42


def test_a_restock_after_many_holds_moves_over_them_in_one_write(mongo_url, database):
    # Given a SKU stocked, then held 50 times (holds the levels do not take), then restocked
    streams = Streams(EventStore(database))
    streams.add(sku_stream("X"), StockAdded(sku="X", quantity=100))
    for _ in range(50):
        streams.add(sku_stream("X"), StockHeld(sku="X", order_id=uuid.uuid4(), quantity=1))
    streams.add(sku_stream("X"), StockAdded(sku="X", quantity=5))
    first, *_, restock = read_stream(database, sku_stream("X"))
    InventoryLevels(database).apply(first)
    listener = Commands()
    client: MongoClient[Any] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[listener]
    )

    # When the restock is delivered
    assert InventoryLevels(client[database.name]).apply(restock)
    client.close()

    # Then the levels count it, having moved over the holds with one write, not fifty
    writes = [n for n, target in listener.targets if target == "inventory_levels"]
    assert writes.count("update") <= 3, writes
    assert database.inventory_levels.find_one({"_id": "X"})["added"] == 105


def test_a_profile_read_with_an_orders_token_sees_that_order(database):
    # Given an order placed and confirmed in the store, nothing applied yet
    streams = Streams(EventStore(database))
    customer_id = uuid.uuid4()
    fulfil(streams, customer_id, "confirmed", random.Random(8))
    stream = next(s for s in streams.versions if s.startswith("order-"))
    placed, confirmed = read_stream(database, stream)
    profiles = CustomerProfiles(database)

    def read(version: int) -> Any:
        return get_customer_profile(customer_id, ConsistencyToken(stream, version), timeout=0.2)

    # When the profile is read with the order's tokens as its events are applied
    before = read(1)
    profiles.apply(placed)
    after_placed = read(1)
    not_yet = read(2)
    profiles.apply(confirmed)
    after_confirmed = read(2)

    # Then each token is reached exactly when the profile holds that version of the order
    assert before.stale and not_yet.stale
    assert not after_placed.stale and after_placed.value.orders_placed == 1
    assert not after_confirmed.stale and after_confirmed.value.orders_confirmed == 1


class Writes(monitoring.CommandListener):
    """Documents written per collection (each update statement of a bulk write is one)."""

    def __init__(self) -> None:
        self.by_collection: dict[str, int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update":
            name = event.command["update"]
            written = len(event.command.get("updates", ()))
            self.by_collection[name] = self.by_collection.get(name, 0) + written

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("fate", ["confirmed", "cancelled"])
def test_an_orders_last_event_gives_its_recent_row_its_status_in_the_entrys_write(
    mongo_url: str, database: Any, fate: str
) -> None:
    # Given a customer's order placed and applied to the profile, and its end in the store
    streams = Streams(EventStore(database))
    customer_id = uuid.uuid4()
    fulfil(streams, customer_id, fate, random.Random(11))
    order = next(s for s in streams.versions if s.startswith("order-"))
    placed, *rest = read_stream(database, order)
    CustomerProfiles(database).apply(placed)
    # When the order's last event is applied
    writes = Writes()
    applied_listened(mongo_url, database, writes, rest)
    # Then its row among the recent orders says how it ended, and its entry is dropped, in
    # one write with the total and one with the order's position: three documents written
    profile = database.customer_profile.find_one({"_id": str(customer_id)})
    assert [row["status"] for row in profile["recent_orders"]] == [fate]
    assert profile["_open"] == {}
    assert writes.by_collection == {"customer_profile": 3}
    # and a rebuild builds the same profile
    rebuilt = client_rebuilt(mongo_url, database.name, CustomerProfiles)
    assert rebuilt.customer_profile.find_one({"_id": str(customer_id)}) == profile


def client_rebuilt(mongo_url: str, name: str, kind: type[Projection]) -> Any:
    """The database ``name`` after ``kind`` was rebuilt there from the log."""
    Rebuild(
        MongoClient(mongo_url, tz_aware=True, uuidRepresentation="standard")[name],
        kind,
        settle_seconds=0,
    ).run()
    return MongoClient(mongo_url, tz_aware=True, uuidRepresentation="standard")[name]


def test_a_repair_planned_before_another_writer_ended_the_stream_changes_nothing_twice(database):
    # Given a reservation reserved and committed on two SKUs, its reservation applied half
    # way (the gate and the first SKU: a worker killed mid-write)
    store = EventStore(database)
    order_id = uuid.uuid4()
    lines = (StockLine(sku="RACE-A", quantity=1), StockLine(sku="RACE-B", quantity=2))
    stream = reservation_stream(order_id)
    store.append(stream, 0, [StockReserved(order_id=order_id, lines=lines)])
    store.append(stream, 1, [StockCommitted(order_id=order_id, lines=lines)])
    reserved, committed = read_stream(database, stream)
    live = InventoryLevels(database)
    where = live.place(reserved)
    gate, first_sku, _ = live.steps(reserved, where)
    assert live.documents.run([gate, first_sku])

    # When a repair reads that state and runs its first step (the gate still unchanged),
    # then another worker applies the commitment in full (its own repair, the drops), and
    # only then the first repair's other steps run
    planned = live._missing(live.place(committed), [reserved, committed])
    assert live.documents.run(planned[:1])
    InventoryLevels(database).apply(committed)
    live.documents.run(planned[1:])

    # Then each SKU counts the order's stock once, as the log does
    for line in lines:
        doc = database.inventory_levels.find_one({"_id": line.sku})
        assert (doc.get("held"), doc.get("committed")) == (line.quantity, line.quantity)
    assert verify_projection(database, InventoryLevels).consistent
