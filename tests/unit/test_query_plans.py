"""The deadline sweeper's query reads an index, never the whole collection.

The sweeper runs every second in every worker process, whatever the load; a query of its
that scans grows with every saga ever stored (measured on the embedded store: 283 ms a pass
at 20,000 finished sagas, each second, with ``wake_at`` null on them and a partial index
the server could not match to the query). The server's own plan (``explain``) is asserted,
so this holds on MongoDB too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import monitoring
from pymongo.database import Database

from readstore.db import Document
from sagas.fulfilment import start
from sagas.store import SagaRecord, SagaStore
from tests.support import listened, order_placed, place_order
from workers.ops.status import overdue_sagas
from workers.write import receipts
from workers.write.eventstore import EventStore


def stages(plan: dict[str, Any]) -> Iterator[str]:
    """Every stage of a winning plan, outermost first."""
    yield plan.get("stage", "")
    for key in ("inputStage", "queryPlan"):
        if isinstance(plan.get(key), dict):
            yield from stages(plan[key])
    for child in plan.get("inputStages", []):
        yield from stages(child)


def winning(cursor: Any) -> list[str]:
    return list(stages(cursor.explain()["queryPlanner"]["winningPlan"]))


def _sagas(store: SagaStore, count: int) -> list[SagaRecord]:
    """``count`` sagas just started (each with its first step's deadline)."""
    now = datetime.now(UTC)
    records = []
    for _ in range(count):
        placed = order_placed(place_order(uuid.uuid4()))
        state, out = start(placed, 30.0, now)
        record = store.create(state, placed, out)
        assert record is not None
        records.append(record)
    return records


def test_the_sweepers_query_reads_its_index(database: Database[Document]) -> None:
    # Given sagas, two of them with no deadline any more (finished, nothing pending)
    store = SagaStore(database)
    store.indexes()
    records = _sagas(store, 3)
    store.collection.bulk_write([store.postpone(r, None) for r in records[:2]])
    # When the sweeper looks for what has come due
    now = datetime.now(UTC) + timedelta(minutes=1)
    plan = winning(store.collection.find(*store.due_query(now)).sort("wake_at", 1).limit(200))
    # Then the plan is an index scan, and it finds the one saga with a deadline
    assert "COLLSCAN" not in plan and "IXSCAN" in plan, plan
    assert [r.saga_id for r in store.due(now)] == [records[2].saga_id]


def test_a_saga_without_a_deadline_carries_no_wake_at(database: Database[Document]) -> None:
    # Given a saga whose deadline is taken away
    store = SagaStore(database)
    [record] = _sagas(store, 1)
    store.collection.bulk_write([store.postpone(record, None)])
    # Then the field is gone, not null: a null is indexed, and the sweeper reads past it
    doc = store.collection.find_one({"_id": record.saga_id})
    assert doc is not None and "wake_at" not in doc


def test_the_relays_queries_read_their_indexes(database: Database[Document]) -> None:
    # Given the event store's indexes, commits stored before receipts (some dispatched), a
    # parked one, and receipts
    EventStore(database).ensure_indexes()
    now = datetime.now(UTC)
    database["commits"].insert_many(
        {"_id": f"s-{i}@1", "dispatched": i % 2 == 0, "committed_at": now - timedelta(seconds=i)}
        for i in range(20)
    )
    database["commits"].update_one({"_id": "s-1@1"}, {"$set": {"parked": {"at": now}}})
    receipts.receipts(database).insert_one(receipts.receipt(["s-3@1"]))
    # When the relay reads commits past its watermark, first and after a full page, and receipts
    past = database["commits"].find(receipts.range_query({"$gt": receipts.BEGINNING}, now))
    tied = database["commits"].find(receipts.range_query({"$gte": now}, now))
    named = receipts.receipts(database).find({"at": {"$gt": now - timedelta(minutes=1)}})
    # Then each plan is an index scan
    for cursor in (past.sort("committed_at", 1).limit(500), tied.sort("committed_at", 1), named):
        plan = winning(cursor)
        assert "COLLSCAN" not in plan and "IXSCAN" in plan, plan
    # And the relay finds the undispatched, unparked, unreceipted ones, oldest first
    pending = [c for c, _ in receipts.pending(database, now)]
    assert pending == [f"s-{i}@1" for i in (19, 17, 15, 13, 11, 9, 7, 5)]


def test_status_counts_parked_commits_from_an_index(database: Database[Document]) -> None:
    # Given commits, one of them parked by the relay (status counts them on every look, and
    # the console's overview looks every few seconds: a scan grows with every commit stored)
    store = EventStore(database)
    store.ensure_indexes()
    now = datetime.now(UTC)
    database["commits"].insert_many(
        {"_id": f"s-{i}@1", "dispatched": False, "committed_at": now} for i in range(20)
    )
    parked = {"at": now, "reason": "does not decode"}
    database["commits"].update_one({"_id": "s-4@1"}, {"$set": {"parked": parked}})
    # When the parked ones are counted, Then from an index, and only the one
    plan = winning(database["commits"].find(store.parked_query()))
    assert "COLLSCAN" not in plan and "IXSCAN" in plan, plan
    assert store.count_parked() == 1


class SagaFilters(monitoring.CommandListener):
    """The filters of every read of the sagas collection."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if command.get("find") == "sagas":
            self.filters.append(command.get("filter", {}))
        elif command.get("aggregate") == "sagas":
            self.filters += [s["$match"] for s in command["pipeline"] if "$match" in s]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def scans(query: dict[str, Any]) -> bool:
    """Whether the embedded store reads every saga for ``query``: a top-level ``$or`` or a
    ``$nin`` on the status (finished sagas are nearly all of them) does (measured: 285 ms
    against 2.7 ms at 20,000 sagas)."""
    status = query.get("status")
    return "$or" in query or (isinstance(status, dict) and "$nin" in status)


def test_status_and_the_console_read_running_sagas_without_reading_finished_ones(
    mongo_url: str,
) -> None:
    # Given sagas: running past their deadline, finished, finished with a message pending,
    # flagged
    filters = SagaFilters()
    with listened(mongo_url, filters) as database:
        store = SagaStore(database)
        store.indexes()
        late = datetime.now(UTC) - timedelta(hours=1)
        running, done, pending, flagged = (uuid.uuid4().hex for _ in range(4))
        store.collection.insert_many(
            [
                {"_id": running, "status": "charging", "deadline": late, "pending": []},
                {"_id": done, "status": "completed", "deadline": None, "pending": []},
                {
                    "_id": pending,
                    "status": "completed",
                    "deadline": None,
                    "wake_at": late,
                    "pending": [{"type": "CommitStock"}],
                },
                {"_id": flagged, "status": "flagged", "deadline": None, "pending": []},
            ]
        )
        # When status counts overdue and running sagas, and the console lists stuck ones
        filters.filters.clear()
        overdue = overdue_sagas(database, timedelta(minutes=5))
        stuck = [d["_id"] for d in store.stuck(datetime.now(UTC))]
        counted = store.count_running()
    # Then each finds what it should, and none of their reads makes the store read them all
    assert (overdue, counted) == (1, 2)
    assert stuck == [flagged, running]  # by deadline, none first
    assert [f for f in filters.filters if scans(f)] == []
