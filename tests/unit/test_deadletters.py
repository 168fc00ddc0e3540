"""The dead-letter store and its middleware, on the StubBroker."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database

from messages import encode
from readstore.db import Document
from tests.support import place_order, register_customer, settle
from workers.deadletters.record import group_key
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.publishing import publish
from workers.runtime.broker import queue_name


def send_raw(broker: StubBroker, base_queue: str, actor: str, *args: Any) -> str:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name(base_queue),
        actor_name=actor,
        args=args,
        kwargs={},
        options={},
    )
    broker.enqueue(message)
    return message.message_id


def test_invalid_message_is_recorded_with_its_reason(
    stub_broker: StubBroker, stub_worker: Worker, database: Database[Document]
) -> None:
    # Given a command whose data violates its schema
    wire = encode(register_customer())
    wire["data"]["email"] = 42
    # When it is sent to the customers' command actor
    envelope_id = send_raw(stub_broker, "customers.commands", "handle_customer_command", wire)
    settle(stub_broker, stub_worker)
    # Then it is dead-lettered once, without retries, with the validation error as reason
    entry = DeadLetterStore().get(envelope_id)
    assert entry is not None
    assert entry["error_type"] == "InvalidMessageError"
    assert "email" in entry["reason"]
    assert entry["attempts"] == 1
    assert entry["state"] == "dead"
    assert "InvalidMessageError" in (entry["traceback"] or "")
    assert entry["message_type"] is None  # it does not decode


def test_oversized_message_is_refused_without_running_the_actor(
    stub_broker: StubBroker, stub_worker: Worker, settings: Any
) -> None:
    # Given a message larger than the configured maximum
    command = register_customer(name="A" * 20)
    wire = encode(command)
    wire["data"]["name"] = "x" * (settings.max_message_bytes + 10)
    # When it is sent
    envelope_id = send_raw(stub_broker, "customers.commands", "handle_customer_command", wire)
    settle(stub_broker, stub_worker)
    # Then it is dead-lettered as too large, and its stored envelope is cut
    entry = DeadLetterStore().get(envelope_id)
    assert entry is not None
    assert entry["error_type"] == "MessageTooLarge"
    assert "over the" in entry["reason"]
    assert entry["truncated"] is True
    assert entry["replayable"] is False


def test_failing_again_after_replay_updates_the_same_entry(
    stub_broker: StubBroker, stub_worker: Worker
) -> None:
    # Given a dead-lettered message
    envelope_id = send_raw(stub_broker, "orders.commands", "handle_order_command", "not json")
    settle(stub_broker, stub_worker)
    store = DeadLetterStore()
    store.mark([envelope_id], "replayed", {"event": "replayed", "by": "ops"})
    # When the same envelope fails again
    stub_broker.enqueue(
        dramatiq.Message(
            queue_name=queue_name("orders.commands"),
            actor_name="handle_order_command",
            args=("not json",),
            kwargs={},
            options={},
            message_id=envelope_id,
        )
    )
    settle(stub_broker, stub_worker)
    # Then it is one entry, dead again, with both failures and the replay in its history
    entry = store.get(envelope_id)
    assert entry is not None
    assert entry["state"] == "dead"
    assert entry["count"] == 2
    assert [h["event"] for h in entry["history"]] == ["failed", "replayed", "failed"]
    assert entry["replays"] == 1


def test_listing_filters_by_queue_and_error(stub_broker: StubBroker, stub_worker: Worker) -> None:
    # Given failures on two queues
    send_raw(stub_broker, "orders.commands", "handle_order_command", "not json")
    send_raw(stub_broker, "customers.commands", "handle_customer_command", {"type": "Nope"})
    settle(stub_broker, stub_worker)
    store = DeadLetterStore()
    # When listing one queue
    rows = store.find(Selector(queue=queue_name("orders.commands")))
    # Then only its entry is listed, and every entry falls into a group
    assert len(rows) == 1
    assert rows[0]["queue"] == queue_name("orders.commands")
    assert sum(g["count"] for g in store.groups()) == 2


def test_valid_messages_leave_no_dead_letters(stub_broker: StubBroker, stub_worker: Worker) -> None:
    # Given a valid command
    publish(register_customer())
    # When it is processed
    settle(stub_broker, stub_worker)
    # Then nothing is dead-lettered
    assert DeadLetterStore().find(Selector()) == []


@pytest.mark.parametrize("value", ["-1", "0", "7"])
def test_group_key_keeps_field_paths_and_drops_values(value: str) -> None:
    # Given the same violation with different values and line indexes
    reason = f"PlaceOrder failed validation: lines.{value}.quantity: greater than 0 [{value}]"
    same = "PlaceOrder failed validation: lines.3.quantity: greater than 0 [12]"
    # When keyed
    # Then the key depends on the error type and the field path, not the values
    assert group_key("InvalidMessageError", reason) == group_key("InvalidMessageError", same)
    assert group_key("InvalidMessageError", reason) != group_key("KeyError", reason)
    other_field = "PlaceOrder failed validation: lines.3.unit_price: greater than 0 [12]"
    assert group_key("InvalidMessageError", reason) != group_key("InvalidMessageError", other_field)


def test_parked_stream_holds_later_events_until_released(database: Database[Document]) -> None:
    # Given a customer stream whose first event is parked in its projection
    from readstore.customers import CustomerProfiles
    from readstore.projection import parked_streams, releasing
    from workers.write.commands import execute
    from workers.write.eventstore import EventStore

    store = EventStore(database)
    store.ensure_indexes()
    command = register_customer()
    commit = execute(command, store)
    [first] = store.load(commit.token.stream_id)[0].events
    later = first.model_copy(update={"stream_version": 2})
    projection = CustomerProfiles(database)
    projection.park(commit.token.stream_id, 1, "dead-1")
    # When a later event of the stream arrives
    held = projection.apply(later)
    # Then it is held, not applied; the replayed event releases the stream
    assert held is False
    assert parked_streams(database)[0]["held"] == 1
    with releasing():
        assert projection.apply(first) is True
    assert parked_streams(database) == []


def five_causes_twice() -> list[tuple[str, str, dict[str, Any]]]:
    """Two messages (different values) for each of five causes: wrong type, missing field,
    unknown type, newer version, bad decimal."""
    sent = []
    for n in (1, 2):
        customer = encode(register_customer(f"C{n}"))
        wrong_type = {**customer, "data": {**customer["data"], "email": n}}
        missing = {**customer, "data": {k: v for k, v in customer["data"].items() if k != "name"}}
        unknown = {**customer, "type": f"MakeCoffee{n}"}
        newer = {**customer, "version": n + 1}
        order = encode(place_order(uuid.uuid4()))
        order["data"]["lines"][0]["unit_price"] = f"abc{n}"
        customers = ("customers.commands", "handle_customer_command")
        sent += [(*customers, m) for m in (wrong_type, missing, unknown, newer)]
        sent.append(("orders.commands", "handle_order_command", order))
    return sent


def test_dead_letter_groups_are_one_per_cause_with_counts(
    stub_broker: StubBroker, stub_worker: Worker
) -> None:
    # Given two messages for each of five distinct causes
    for queue, actor, message in five_causes_twice():
        send_raw(stub_broker, queue, actor, message)
    # When they are dead-lettered and grouped
    settle(stub_broker, stub_worker)
    groups = DeadLetterStore().groups()
    # Then each cause is its own group of two, its cause shown without values
    assert sorted(g["count"] for g in groups) == [2, 2, 2, 2, 2]
    causes = " | ".join(g["cause"] for g in groups)
    assert "unit_price" in causes and "abc" not in causes
