"""Commands that start a stream append without reading it first; the unique indexes decide."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

from messages.errors import CommandRejected
from messages.orders import order_stream
from readstore.eventlog import stream_version
from tests.support import place_order, register_customer
from workers.write.commands import execute
from workers.write.eventstore import EventStore


class Reads(monitoring.CommandListener):
    """The filters of the ``find`` commands sent to the commits collection."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "commits":
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def watched(stub_broker, mongo_url, database):
    """An event store on a client whose reads of the commits are recorded."""
    reads = Reads()
    client: MongoClient[Any] = MongoClient(mongo_url, tz_aware=True, event_listeners=[reads])
    yield EventStore(client[database.name]), reads
    client.close()


def mentions(filters: list[dict[str, Any]], stream_id: str) -> bool:
    return stream_id in repr(filters)


def test_placing_an_order_does_not_read_the_new_order_stream(watched, database):
    # Given a registered customer
    store, reads = watched
    customer = register_customer()
    execute(customer, store)
    reads.filters.clear()

    # When an order is placed
    command = place_order(customer.customer_id)
    result = execute(command, store)

    # Then it was committed at version 1 with no read of the order's stream
    assert result.committed and stream_version(database, command.stream_id()) == 1
    assert not mentions(reads.filters, order_stream(command.order_id))


def test_redelivered_new_stream_command_is_answered_by_its_commit(watched, database):
    # Given an order placed once
    store, _ = watched
    customer = register_customer()
    execute(customer, store)
    command = place_order(customer.customer_id)
    first = execute(command, store)

    # When the same command is delivered again
    again = execute(command, store)

    # Then the unique index recognised it: no second commit, the same token
    assert (again.duplicate, again.token) == (True, first.token)
    assert stream_version(database, command.stream_id()) == 1


def test_new_stream_command_for_an_existing_stream_is_decided_on_what_is_stored(watched):
    # Given an order placed by one command
    store, reads = watched
    customer = register_customer()
    execute(customer, store)
    command = place_order(customer.customer_id)
    execute(command, store)

    # When another command places the same order
    other = command.model_copy(update={"message_id": uuid.uuid4()})

    # Then the first insert collided, the stream was read, and the rule rejected it
    with pytest.raises(CommandRejected):
        execute(other, store)
    assert mentions(reads.filters, command.stream_id())
