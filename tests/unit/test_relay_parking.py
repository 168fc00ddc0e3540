"""The relay parks a commit it cannot decode and goes on with the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database

from readstore.customers import get_customer_profile
from readstore.db import Document
from tests.support import register_customer, settle
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.write import commands
from workers.write.eventstore import EventStore
from workers.write.outbox import Relay


def undecodable_commit(database: Database[Document]) -> str:
    """A commit written by a newer or broken writer: its event type is unknown here."""
    doc = {
        "_id": "customer-x@1",
        "stream_id": "customer-x",
        "version_from": 1,
        "version": 1,
        "events": [{"type": "CustomerTeleported", "version": 1, "data": {}}],
        "committed_at": datetime.now(UTC) - timedelta(minutes=1),
        "dispatched": False,
    }
    database["commits"].insert_one(doc)
    return str(doc["_id"])


def test_relay_parks_an_undecodable_commit_and_dispatches_the_rest(
    stub_broker: StubBroker, stub_worker: Worker, database: Database[Document], monkeypatch
) -> None:
    # Given an undecodable commit ahead of a valid one, both left undispatched
    bad = undecodable_commit(database)
    customer = register_customer()
    monkeypatch.setattr(commands, "dispatch", lambda commit, store: None)
    commands.execute(customer, EventStore())
    monkeypatch.undo()
    database["commits"].update_many(
        {}, {"$set": {"committed_at": datetime.now(UTC) - timedelta(minutes=1)}}
    )
    # When the relay runs, twice
    relay = Relay(EventStore(), timedelta(seconds=0))
    sent = relay.run_once()
    again = relay.run_once()
    settle(stub_broker, stub_worker)
    # Then the valid commit went out, the bad one is parked and in the dead-letter store
    assert (sent, again) == (1, 0)
    assert get_customer_profile(customer.customer_id).value is not None
    parked = database["commits"].find_one({"_id": bad})
    assert parked is not None and parked["parked"]["reason"]
    [entry] = DeadLetterStore().find(Selector(queue="outbox"))
    assert entry["error_type"] == "UndecodableCommit"
    assert "CustomerTeleported" in entry["reason"]
