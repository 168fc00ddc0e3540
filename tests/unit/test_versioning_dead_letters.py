"""A v1 event dead-lettered before the upgrade is shown and replayed as v2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import uuid

import dramatiq

from readstore.customers import get_customer_profile
from tests.support import settle
from tests.unit.test_versioning import v1_customer_registered
from workers.cli import dlq
from workers.deadletters.record import from_envelope
from workers.deadletters.replay import replay
from workers.deadletters.store import DeadLetterStore
from workers.subscribers.projections import PROJECTIONS


def dead_letter_from_before_the_upgrade(database, customer_id: uuid.UUID) -> str:
    """A dead letter as the store held it before ``CustomerRegistered`` became v2."""
    _, actor = PROJECTIONS["customer_profile"]
    wire = v1_customer_registered(customer_id)
    wire.update(stream_id=f"customer-{customer_id}", stream_version=1)
    envelope = dramatiq.Message(
        queue_name=actor.queue_name,
        actor_name=actor.actor_name,
        args=(wire,),
        kwargs={},
        options={},
        message_id=str(uuid.uuid4()),
    )
    failure = from_envelope(envelope, RuntimeError("the old bug"), source="after_nack")
    failure = dataclasses.replace(failure, message=wire)  # recorded as v1 back then
    DeadLetterStore(database).record(failure, copy_in_xq=False)
    return failure.key


def test_dlq_show_reads_a_v1_message_as_v2(stub_broker, database, monkeypatch, capsys):
    # Given a dead letter holding a v1 event
    entry = dead_letter_from_before_the_upgrade(database, uuid.uuid4())
    monkeypatch.setattr(dlq, "_store", lambda: DeadLetterStore(database))

    # When it is shown
    dlq.run_show(argparse.Namespace(id=entry, json=True))

    # Then its message is the current version
    shown = json.loads(capsys.readouterr().out)["message"]
    assert shown["version"] == 2
    assert shown["data"]["full_name"] == "Old Timer"
    assert "name" not in shown["data"]


def test_dlq_replay_of_a_v1_message_reaches_the_projection_as_v2(
    stub_broker, stub_worker, database
):
    # Given a dead letter holding a v1 event
    customer_id = uuid.uuid4()
    entry = dead_letter_from_before_the_upgrade(database, customer_id)

    # When it is replayed to its projection
    report = replay([entry], by="test", broker=stub_broker)
    settle(stub_broker, stub_worker)

    # Then the projection applied it as v2
    assert report.replayed == [entry]
    profile = get_customer_profile(customer_id).value
    assert profile is not None
    assert profile.name == "Old Timer"
