"""Projection events applied in batches: one write per collection, the same documents as
one by one and as a rebuild, an event's failure its own; the group commit around it."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest
from pymongo import MongoClient, monitoring
from pymongo.errors import AutoReconnect, BulkWriteError, OperationFailure

from messages.errors import UnplaceableEvent
from messages.inventory import (
    StockAdded,
    StockLine,
    StockReserved,
    reservation_stream,
    sku_stream,
)
from messages.orders import OrderConfirmed, order_stream
from readstore.analytics import OrderAnalytics
from readstore.customers import CustomerProfiles
from readstore.eventlog import iter_commits, read_stream
from readstore.inventory import InventoryLevels
from readstore.orders import OrderSummaries
from readstore.rebuild import Rebuild
from readstore.verify import verify_projection
from tests.readside import seed_fulfilment
from tests.support import order_placed, place_order
from tests.unit.test_rebuild import KINDS, dump
from workers.subscribers.projections_batch import GroupCommit, store_away
from workers.write.eventstore import EventStore


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_batched_delivery_ends_as_a_rebuild_after_duplicates_and_disorder(database, kind):
    # Given every projection's events, shuffled, a third of them twice, in batches of 1 to 15
    seed_fulfilment(EventStore(database), orders=10)
    events = [e for c in iter_commits(database) for e in c.events if isinstance(e, kind.handles)]
    rng = random.Random(4)
    deliveries = events + rng.sample(events, len(events) // 3)
    rng.shuffle(deliveries)
    live = kind(database)

    # When they are applied batch by batch
    while deliveries:
        size = rng.randint(1, 15)
        outcomes = live.apply_batch(deliveries[:size])
        deliveries = deliveries[size:]
        assert not [o for o in outcomes if isinstance(o, Exception)]
    before = dump(database, live)

    # Then a rebuild from the log makes the same documents, and verify agrees
    Rebuild(database, kind, settle_seconds=0).run()
    assert dump(database, kind(database)) == before
    assert verify_projection(database, kind).consistent


class Updates(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def orders_in_store(store: EventStore, count: int) -> list[Any]:
    """``count`` orders placed and confirmed, in the store; their four events each."""
    events = []
    for _ in range(count):
        command = place_order(uuid.uuid4(), ("SKU-1", 1, "2.00"))
        placed = order_placed(command)
        keys = {"order_id": command.order_id, "customer_id": command.customer_id}
        confirmed = OrderConfirmed(**keys, total=placed.total)
        store.append(order_stream(command.order_id), 0, [placed, confirmed])
        events += read_stream(store.database, order_stream(command.order_id))
    return events


def summaries_recorded(mongo_url: str, database: Any, events: list[Any]) -> tuple[Any, list[str]]:
    """``events`` applied to the order summaries as one batch, on a client that records its
    commands; the outcomes, and the names of the commands sent to the summaries."""
    listener = Updates()
    client: MongoClient[Any] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[listener]
    )
    outcomes = OrderSummaries(client[database.name]).apply_batch(events)
    client.close()
    return outcomes, [name for name, target in listener.commands if target == "order_summary"]


def test_events_that_apply_in_turn_take_one_write_per_collection(mongo_url, database):
    # Given ten orders placed and confirmed
    events = orders_in_store(EventStore(database), 10)

    # When their 20 events are applied as one batch
    outcomes, on_summaries = summaries_recorded(mongo_url, database, events)

    # Then all were applied with one write to the summaries, and nothing read there first
    assert outcomes == [True] * 20
    assert on_summaries == ["update"]
    assert {d["status"] for d in database.order_summary.find()} == {"confirmed"}


def placements_in_store(store: EventStore, count: int) -> list[Any]:
    """``count`` orders placed, in the store; their ``OrderPlaced`` each."""
    events = []
    for _ in range(count):
        command = place_order(uuid.uuid4(), ("SKU-1", 1, "2.00"))
        store.append(order_stream(command.order_id), 0, [order_placed(command)])
        events += read_stream(store.database, order_stream(command.order_id))
    return events


def test_a_batch_of_new_orders_is_one_insert_of_their_summaries(mongo_url, database):
    # Given five orders placed
    events = placements_in_store(EventStore(database), 5)

    # When their placements are applied as one batch
    outcomes, on_summaries = summaries_recorded(mongo_url, database, events)

    # Then one insert wrote the five summaries, each as one by one would have
    assert outcomes == [True] * 5
    assert on_summaries == ["insert"]
    one_by_one = OrderSummaries(database, collection="order_summary_one_by_one")
    for event in events:
        one_by_one.apply(event)
    assert dump_collection(database.order_summary) == dump_collection(
        database.order_summary_one_by_one
    )


def test_a_new_order_whose_summary_exists_already_is_applied_by_its_update(database):
    # Given an order whose reservation reached its summary before its placement did
    placed, other = placements_in_store(EventStore(database), 2)
    lines = (StockLine(sku="SKU-1", quantity=1),)
    reserved = StockReserved(order_id=placed.order_id, lines=lines)
    EventStore(database).append(reservation_stream(placed.order_id), 0, [reserved])
    OrderSummaries(database).apply(read_stream(database, reservation_stream(placed.order_id))[0])

    # When its placement comes in a batch of new orders, twice
    outcomes = OrderSummaries(database).apply_batch([placed, other, placed])

    # Then it was applied once, next to the reservation, and the other order too
    assert outcomes == [True, True, False]
    doc = database.order_summary.find_one({"_id": str(placed.order_id)})
    assert doc["_version"] == 1 and doc["_stock"] == 1 and doc["status"] == "pending"
    assert database.order_summary.count_documents({"_version": 1}) == 2


def test_a_redelivered_new_order_in_a_batch_is_found_applied(database):
    # Given an order placed and applied
    first, second = placements_in_store(EventStore(database), 2)
    OrderSummaries(database).apply(first)
    before = database.order_summary.find_one({"_id": str(first.order_id)})

    # When its placement comes again in a batch of new orders
    outcomes = OrderSummaries(database).apply_batch([first, second])

    # Then it changed nothing, and the new one was applied
    assert outcomes == [False, True]
    assert database.order_summary.find_one({"_id": str(first.order_id)}) == before


def dump_collection(collection: Any) -> list[Any]:
    return sorted(collection.find(), key=lambda d: str(d["_id"]))


def test_an_event_that_cannot_be_placed_fails_alone_in_its_batch(database):
    # Given two orders' events and, between them, one with no stream position
    first, second = orders_in_store(EventStore(database), 2)[::2]
    stray = first.model_copy(update={"stream_id": None, "stream_version": None})

    # When they are applied as one batch
    outcomes = OrderSummaries(database).apply_batch([first, stray, second])

    # Then the stray failed for good, and the others were applied
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], UnplaceableEvent)


def test_a_first_event_applied_before_does_not_stop_the_rest_of_its_batch(database):
    # Given two orders placed, the first of them already applied
    first, _, second, _ = orders_in_store(EventStore(database), 2)
    OrderSummaries(database).apply(first)

    # When both placements come in one batch, the applied one first
    outcomes = OrderSummaries(database).apply_batch([first, second])

    # Then the second was applied too, and the first stands applied once
    assert outcomes[1] is True
    assert database.order_summary.count_documents({"_version": 1}) == 2


def test_an_event_ahead_of_its_stream_in_a_batch_heals_the_gap(database):
    # Given an order placed and confirmed in the store, neither applied yet
    _, confirmed = orders_in_store(EventStore(database), 1)

    # When only its confirmation arrives, with another copy of itself
    outcomes = OrderSummaries(database).apply_batch([confirmed, confirmed])

    # Then the placement was read from the store and applied first
    assert outcomes == [True, False]
    (doc,) = database.order_summary.find()
    assert doc["status"] == "confirmed" and doc["_version"] == 2 and doc["total"] is not None


def test_a_documents_own_write_error_fails_only_its_event_in_a_batch(database):
    # Given stock added to two SKUs, applied, and one SKU's document broken by hand
    store = EventStore(database)
    for sku in ("SKU-A", "SKU-B"):
        store.append(sku_stream(sku), 0, [StockAdded(sku=sku, quantity=5)])
        store.append(sku_stream(sku), 1, [StockAdded(sku=sku, quantity=7)])
    first, second = ([], [])
    for sku in ("SKU-A", "SKU-B"):
        added, more = read_stream(database, sku_stream(sku))
        InventoryLevels(database).apply(added)
        (first if sku == "SKU-A" else second).append(more)
    database.inventory_levels.update_one({"_id": "SKU-A"}, {"$set": {"added": "five"}})

    # When both SKUs' next events come in one batch, the broken one first
    outcomes = InventoryLevels(database).apply_batch([*first, *second])

    # Then the broken SKU's event failed with the store's refusal, the other was applied
    assert isinstance(outcomes[0], OperationFailure)
    assert outcomes[1] is True
    assert database.inventory_levels.find_one({"_id": "SKU-B"})["added"] == 12


class Held:
    """A batch applier that holds its first flush until ``release``, recording each batch."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.release = threading.Event()

    def __call__(self, events: Any) -> list[bool | Exception]:
        self.batches.append(list(events))
        if len(self.batches) == 1:
            self.release.wait(5)
        return [ValueError(e) if e == "bad" else True for e in events]


def submit_all(
    group: GroupCommit, events: list[Any]
) -> tuple[dict[Any, Any], list[threading.Thread]]:
    """Each event applied from its own thread; what each got back or raised."""
    results: dict[Any, Any] = {}

    def submit(event: Any) -> None:
        try:
            results[event] = group.apply(event)
        except Exception as exc:  # what that thread's message would fail with
            results[event] = exc

    threads = [threading.Thread(target=submit, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    return results, threads


def test_events_waiting_during_a_flush_are_flushed_together():
    # Given a flush under way
    held = Held()
    group = GroupCommit(held)
    _, first = submit_all(group, ["first"])
    while not held.batches:
        threading.Event().wait(0.01)

    # When five more events arrive meanwhile, then the flush ends
    _, others = submit_all(group, ["a", "b", "c", "d", "e"])
    while len(group._waiting) < 5:
        threading.Event().wait(0.01)
    held.release.set()
    for thread in first + others:
        thread.join(5)

    # Then the five went in one second flush
    assert held.batches[0] == ["first"]
    assert sorted(held.batches[1]) == ["a", "b", "c", "d", "e"]
    assert len(held.batches) == 2


def test_an_events_error_fails_only_its_own_message():
    # Given a flush under way, and a good and a bad event waiting behind it
    held = Held()
    group = GroupCommit(held)
    _, first = submit_all(group, ["first"])
    while not held.batches:
        threading.Event().wait(0.01)
    results, others = submit_all(group, ["good", "bad"])
    while len(group._waiting) < 2:
        threading.Event().wait(0.01)

    # When both are flushed together
    held.release.set()
    for thread in first + others:
        thread.join(5)

    # Then the bad one's thread raised its error, the good one's was applied
    assert results["good"] is True
    assert isinstance(results["bad"], ValueError)


def test_a_flush_that_fails_fails_every_event_in_it():
    # Given a store that refuses the write
    def refused(events: Any) -> list[bool | Exception]:
        raise ConnectionError("store unreachable")

    # When two events are applied
    results, threads = submit_all(GroupCommit(refused), ["x", "y"])
    for thread in threads:
        thread.join(5)

    # Then each message got the failure, to be retried
    assert all(isinstance(r, ConnectionError) for r in results.values())


def test_a_flush_refused_for_one_event_fails_only_that_events_message():
    # Given a write that refuses a whole batch holding a bad event (as a store may)
    flushed: list[list[Any]] = []

    def strict(events: Any) -> list[bool | Exception]:
        flushed.append(list(events))
        if "bad" in events:
            raise ValueError("document too large")
        return [True for _ in events]

    group = GroupCommit(strict, linger=0.2)

    # When a good and a bad event are flushed together
    results, threads = submit_all(group, ["good", "bad"])
    for thread in threads:
        thread.join(5)

    # Then each was tried alone after the batch failed: only the bad one's message fails
    assert results["good"] is True
    assert isinstance(results["bad"], ValueError)
    assert sorted(map(sorted, flushed)) == [["bad"], ["bad", "good"], ["good"]]


def test_a_flush_that_fails_because_the_store_is_away_is_not_tried_event_by_event():
    # Given a store that cannot be reached
    flushed: list[list[Any]] = []

    def away(events: Any) -> list[bool | Exception]:
        flushed.append(list(events))
        raise AutoReconnect("connection refused")

    # When two events are flushed together
    results, threads = submit_all(GroupCommit(away, linger=0.2), ["x", "y"])
    for thread in threads:
        thread.join(5)

    # Then one attempt failed them both: nothing is hammered while the store is down
    assert all(isinstance(r, AutoReconnect) for r in results.values())
    assert len(flushed) == 1


@pytest.mark.parametrize("kind", [OrderAnalytics, CustomerProfiles, InventoryLevels], ids=str)
def test_a_batch_that_applies_in_turn_is_one_store_command(mongo_url, database, kind):
    # Given orders through fulfilment in the store, each projection's events in stream order
    seed_fulfilment(EventStore(database), orders=6)
    events = [e for c in iter_commits(database) for e in c.events if isinstance(e, kind.handles)]
    listener = Updates()
    client: MongoClient[Any] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[listener]
    )

    # When they are applied as one batch
    outcomes = kind(client[database.name]).apply_batch(events)
    client.close()

    # Then every one applied, with a single write: no read, no second collection, no counter
    assert outcomes == [True] * len(events)
    written = {kind.collection_name, "read_model_versions"}
    on_model = [name for name, target in listener.commands if str(target) in written]
    assert on_model == ["update"]


def two_events_apart(linger: float) -> list[list[Any]]:
    """The batches a group whose lone events wait ``linger`` seconds makes of two events
    arriving 50 ms apart."""
    batches: list[list[Any]] = []
    group = GroupCommit(lambda events: batches.append(list(events)) or [True] * len(events))
    group.linger = linger
    _, first = submit_all(group, ["first"])
    threading.Event().wait(0.05)
    _, second = submit_all(group, ["second"])
    for thread in first + second:
        thread.join(5)
    return batches


def test_a_lone_event_waits_a_moment_for_company_then_flushes_with_it():
    # Given a group whose lone events wait up to 0.5 s for others of their projection
    # When one event arrives, and a second 50 ms later
    batches = two_events_apart(0.5)
    # Then both went in one flush
    assert batches == [["first", "second"]]


def test_without_a_wait_a_lone_event_is_flushed_at_once():
    # Given a group that does not wait (the setting at 0)
    # When two events arrive 50 ms apart
    batches = two_events_apart(0.0)
    # Then each was flushed on its own
    assert batches == [["first"], ["second"]]


def test_a_lone_event_nobody_joins_is_flushed_after_the_wait():
    # Given a group whose lone events wait up to 0.1 s
    batches: list[list[Any]] = []
    group = GroupCommit(lambda events: batches.append(list(events)) or [True] * len(events))
    group.linger = 0.1

    # When one event arrives and no other
    started = time.monotonic()
    assert group.apply("alone") is True

    # Then it was flushed alone once the wait was over, not before, and not much after
    waited = time.monotonic() - started
    assert batches == [["alone"]]
    assert 0.1 <= waited < 1.0


@pytest.mark.parametrize(
    ("error", "away"),
    [
        (AutoReconnect("refused"), True),
        (ConnectionError("reset"), True),
        (BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64}]}), True),
        (BulkWriteError({"writeErrors": [{"index": 0, "code": 14}]}), False),
        (OperationFailure("too large", 10334), False),
        (ValueError("cannot encode"), False),
    ],
    ids=repr,
)
def test_only_an_error_of_the_store_being_away_fails_a_flush_as_a_whole(error, away):
    assert store_away(error) is away
    assert GroupCommit(lambda events: []).divisible(error) is not away
