"""Snapshots: taken every N events, restored when they fit, ignored when the schema moved."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import ClassVar

import pytest

from messages import Command, Event, registry
from messages.errors import CommandRejected
from readstore.eventlog import commits
from workers.write import snapshots
from workers.write.aggregates import Aggregate
from workers.write.commands import Session, execute, handles
from workers.write.eventstore import EventStore


@registry.register
class AddToTally(Command):
    CONTEXT = "tests"
    tally_id: uuid.UUID
    amount: Decimal
    #: Refused once the tally is closed (to check duplicates after a snapshot).
    close: bool = False

    def stream_id(self) -> str:
        return f"tally-{self.tally_id}"


@registry.register
class TallyAdded(Event):
    amount: Decimal
    close: bool


class Tally(Aggregate):
    stream_type = "tally"
    SNAPSHOT_EVERY: ClassVar[int] = 10

    total: Decimal = Decimal(0)
    count: int = 0
    last: uuid.UUID | None = None
    closed: bool = False

    def when_TallyAdded(self, event: TallyAdded) -> None:
        self.total += event.amount
        self.count += 1
        self.last = event.message_id
        self.closed = event.close


@handles(AddToTally, Tally)
def add_to_tally(tally: Tally, command: AddToTally, _: Session) -> None:
    if tally.closed:
        raise CommandRejected("the tally is closed")
    tally.record(TallyAdded(amount=command.amount, close=command.close))


def add(store: EventStore, tally_id: uuid.UUID, times: int) -> list[AddToTally]:
    sent = [AddToTally(tally_id=tally_id, amount=Decimal(i)) for i in range(1, times + 1)]
    for command in sent:
        execute(command, store)
    return sent


def load(store: EventStore, tally_id: uuid.UUID) -> Tally:
    return Session(store).load(Tally, f"tally-{tally_id}")


@pytest.fixture
def store(database) -> Iterator[EventStore]:
    snapshots.configure({})
    store = EventStore(database)
    store.ensure_indexes()
    yield store
    snapshots.configure({})


def test_a_commit_crossing_n_events_leaves_a_snapshot(store):
    # Given a tally snapshotted every 10 events
    tally_id = uuid.uuid4()

    # When 25 commands are handled
    add(store, tally_id, 25)

    # Then the newest snapshot holds version 20 and the state as of then
    snapshot = snapshots.SnapshotStore(store.database).get(f"tally-{tally_id}")
    assert snapshot is not None
    assert snapshot.version == 20
    assert Decimal(snapshot.state["total"]) == sum(Decimal(i) for i in range(1, 21))


def test_loading_from_a_snapshot_equals_folding_the_whole_stream(store):
    # Given a tally with a snapshot and events after it
    tally_id = uuid.uuid4()
    add(store, tally_id, 25)

    # When it is loaded
    tally = load(store, tally_id)

    # Then it started from the snapshot and reached the same state as a full fold
    full = Tally.from_commits(f"tally-{tally_id}", store.load(f"tally-{tally_id}"))
    assert tally.snapshot_version == 20
    assert (tally.version, tally.total, tally.count, tally.last) == (
        full.version,
        full.total,
        full.count,
        full.last,
    )


def test_a_snapshot_of_another_schema_is_ignored_and_rebuilt(store, monkeypatch):
    # Given a snapshot taken under schema 1
    tally_id = uuid.uuid4()
    add(store, tally_id, 12)

    # When the aggregate's schema moves to 2 and it is loaded
    monkeypatch.setattr(Tally, "SCHEMA_VERSION", 2)
    tally = load(store, tally_id)

    # Then the old snapshot was not used, and a schema-2 snapshot replaced it
    assert tally.snapshot_version == 0
    assert tally.total == sum(Decimal(i) for i in range(1, 13))
    snapshot = snapshots.SnapshotStore(store.database).get(f"tally-{tally_id}")
    assert snapshot is not None
    assert (snapshot.schema_version, snapshot.version) == (2, 12)


def test_a_redelivered_command_from_before_the_snapshot_is_a_duplicate(store):
    # Given a command committed before the tally's snapshot
    tally_id = uuid.uuid4()
    first, *_ = add(store, tally_id, 15)

    # When it is delivered again
    result = execute(first, store)

    # Then it is answered as a duplicate and commits nothing
    assert result.duplicate
    assert result.token.version == 1
    assert commits(store.database).count_documents({"stream_id": f"tally-{tally_id}"}) == 15


def test_a_rejected_redelivery_from_before_the_snapshot_is_a_duplicate(store):
    # Given a tally closed by its first command, then snapshotted (closing never rejects itself)
    tally_id = uuid.uuid4()
    closing = AddToTally(tally_id=tally_id, amount=Decimal(1), close=True)
    execute(closing, store)
    load(store, tally_id)  # no snapshot yet below N
    snapshots.configure({"tally": 1})
    load(store, tally_id)  # the load takes one now

    # When the closing command comes again
    result = execute(closing, store)

    # Then it is a duplicate, not a rejection
    assert result.duplicate


def test_settings_override_the_interval_by_stream_type(store):
    # Given an override of every 5 events for tallies
    snapshots.configure({"tally": 5})
    tally_id = uuid.uuid4()

    # When 7 commands are handled
    add(store, tally_id, 7)

    # Then a snapshot was taken at 5
    snapshot = snapshots.SnapshotStore(store.database).get(f"tally-{tally_id}")
    assert snapshot is not None
    assert snapshot.version == 5


def test_state_that_is_not_annotated_is_not_snapshotted(store):
    # Given an aggregate holding an attribute its class does not declare
    tally = Tally("tally-x")
    tally.undeclared = 1  # type: ignore[attr-defined]

    # When / Then no snapshot is taken rather than a partial one
    assert snapshots.state_of(tally) is None
    assert not snapshots.SnapshotStore(store.database).save(tally, 1)


def test_a_sku_round_trips_through_its_snapshot(store):
    # Given a SKU with stock, holds and a released hold
    from messages.inventory import StockAdded, StockHeld, StockHoldReleased
    from workers.contexts.inventory import Sku

    sku = Sku("sku-A")
    held, released = uuid.uuid4(), uuid.uuid4()
    for event in (
        StockAdded(sku="A", quantity=10),
        StockHeld(sku="A", order_id=held, quantity=2),
        StockHeld(sku="A", order_id=released, quantity=3),
        StockHoldReleased(sku="A", order_id=released, quantity=3),
    ):
        sku.mutate(event)
    sku.version = 4

    # When it is snapshotted and restored
    assert snapshots.SnapshotStore(store.database).save(sku, 4)
    snapshot = snapshots.SnapshotStore(store.database).get("sku-A")
    restored = snapshots.load(Sku, "sku-A", snapshot, [], store.load)

    # Then the state is the same, types included
    assert restored.version == 4
    assert (restored.added, restored.held, restored.released) == (10, 5, 3)
    assert snapshot is not None and set(snapshot.state) == {"added", "held", "released"}
    assert restored.available == sku.available
