"""What the framework needs from MongoDB, written once: run on the embedded server, or on the
real MongoDB that ``SAGAWORKS_MONGODB_URL`` names."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pymongo.database import Database
from pymongo.errors import DocumentTooLarge, DuplicateKeyError, WriteError

from messages.errors import ConcurrencyError
from readstore.db import Document
from tests.support import order_placed, place_order, register_customer
from workers.write.eventstore import DuplicateCommand, EventStore


def test_a_unique_index_refuses_a_second_document(database: Database[Document]) -> None:
    # Given a unique index
    database.things.create_index("key", unique=True)
    database.things.insert_one({"key": 1})
    # Then a second document with the same key is refused with DuplicateKeyError
    with pytest.raises(DuplicateKeyError):
        database.things.insert_one({"key": 1})


def test_racing_upserts_leave_one_document(database: Database[Document]) -> None:
    # When eight writers upsert the same id at once
    def upsert(n: int) -> None:
        try:
            database.races.update_one(
                {"_id": "one"}, {"$setOnInsert": {"first": n}, "$inc": {"n": 1}}, upsert=True
            )
        except DuplicateKeyError:  # a lost upsert race is reported, as MongoDB does
            database.races.update_one({"_id": "one"}, {"$inc": {"n": 1}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upsert, range(8)))
    # Then there is one document, and every increment landed
    [doc] = database.races.find()
    assert doc["n"] == 8


def test_a_conditional_update_applies_once(database: Database[Document]) -> None:
    # Given a document at version 1, and two writers who both read version 1
    database.optimistic.insert_one({"_id": "s", "version": 1})
    # When both write "at version 1"
    results = [
        database.optimistic.update_one({"_id": "s", "version": 1}, {"$set": {"version": 2}})
        for _ in range(2)
    ]
    # Then exactly one of them modified it
    assert [r.modified_count for r in results] == [1, 0]


def test_a_document_over_16_mb_is_refused(database: Database[Document]) -> None:
    with pytest.raises((DocumentTooLarge, WriteError)):
        database.big.insert_one({"blob": "x" * (17 * 1024 * 1024)})


def test_two_appends_at_one_version_one_wins(database: Database[Document]) -> None:
    # Given an event to append to a new stream, by two writers at once
    store = EventStore(database)
    store.ensure_indexes()
    event = order_placed(place_order(register_customer().customer_id))
    stream = f"order-{event.order_id}"

    def append(_: int) -> str:
        try:
            store.append(stream, 0, [event])
        except ConcurrencyError:
            return "conflict"
        return "won"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(append, range(4)))
    # Then one won and the others got a concurrency error; the stream has one commit
    assert outcomes == ["conflict", "conflict", "conflict", "won"]
    assert len(store.load(stream)) == 1


def test_a_command_committed_twice_is_recognised(database: Database[Document]) -> None:
    # Given a command whose events were committed
    store = EventStore(database)
    store.ensure_indexes()
    command = place_order(register_customer().customer_id)
    event = order_placed(command)
    stream = f"order-{command.order_id}"
    first = store.append(stream, 0, [event], command)
    # When the same command is appended again (a redelivery)
    with pytest.raises(DuplicateCommand) as raised:
        store.append(stream, 0, [event], command)
    # Then the store answers with the first commit
    assert raised.value.commit.id == first.id
