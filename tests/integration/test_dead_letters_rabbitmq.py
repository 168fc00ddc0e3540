"""Dead letters on the real RabbitMQ: poison messages, retries then replay, parking, no loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
import pika
import pytest
from dramatiq import Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pymongo.database import Database

from messages import encode
from messages.errors import PermanentError
from messages.orders import CancelOrder, OrderPlaced, order_stream
from readstore.db import Document
from readstore.eventlog import stream_version
from readstore.orders import OrderSummaries
from readstore.projection import parked_streams
from tests.conftest import AMQP_URL
from tests.support import place_order, register_customer, settle
from workers.contexts.customers import Customer
from workers.deadletters.ingest import Ingester
from workers.deadletters.replay import replay
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.publishing import publish
from workers.runtime.settings import Settings
from workers.write.eventstore import EventStore


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(0.2)


def raw_publish(queue: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    connection.close()


def envelope(queue: str, actor: str, *args: Any) -> tuple[str, bytes]:
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": queue,
        "actor_name": actor,
        "args": list(args),
        "kwargs": {},
        "options": {},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    return message_id, json.dumps(body).encode()


def sagaworks(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as an operator would, against this test's database and queues."""
    env = {
        **os.environ,
        "SAGAWORKS_AMQP_URL": AMQP_URL,
        "SAGAWORKS_MONGODB_URL": settings.mongodb() or "",
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
        "SAGAWORKS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-c", "import sys; from workers.cli import main; sys.exit(main())"]
    command += list(argv)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_poison_messages_each_appear_with_a_clear_reason(
    rabbitmq_broker: RabbitmqBroker, rabbitmq_worker: Worker, settings: Settings
) -> None:
    # Given one poison message of every kind on the order commands queue
    queue = settings.queue_prefix + "orders.commands"
    actor = "handle_order_command"
    wire = encode(place_order(uuid.uuid4()))
    schema = {**wire, "data": {**wire["data"], "lines": "many"}}
    oversized = {**wire, "data": {**wire["data"], "note": "x" * (1024 * 1024 + 1)}}
    poison = {
        "not_json": envelope(queue, actor, "{this is not json"),
        "unknown_type": envelope(queue, actor, {**wire, "type": "ShipToMars"}),
        "schema": envelope(queue, actor, schema),
        "unknown_actor": envelope(queue, "no_such_actor", wire),
        "oversized": envelope(queue, actor, oversized),
    }
    for _, body in poison.values():
        raw_publish(queue, body)
    raw_publish(queue, b"\x00\x01 definitely not an envelope")
    # When the worker and its ingester have had a few seconds
    store = DeadLetterStore()
    wait_for(lambda: len(store.find(Selector(queue=queue))) == 6, timeout=20)
    # Then each has its reason, and the workers still process good messages
    reasons = {kind: store.get(message_id) for kind, (message_id, _) in poison.items()}
    assert reasons["not_json"]["error_type"] == "InvalidMessageError"
    assert "not JSON" in reasons["not_json"]["reason"]
    assert "ShipToMars" in reasons["unknown_type"]["reason"]
    assert "lines" in reasons["schema"]["reason"]
    assert reasons["unknown_actor"]["error_type"] == "ActorNotFound"
    assert reasons["oversized"]["error_type"] == "MessageTooLarge"
    raw = store.find(Selector(queue=queue, error="UndecodableEnvelope"))
    assert len(raw) == 1
    customer = register_customer()
    receipt = publish(customer)
    assert receipt.wait(10) is not None
    wait_for(lambda: rabbitmq_broker.get_queue_message_counts(queue)[2] == 0, timeout=20)


def test_failing_actor_is_retried_dead_lettered_then_replayed_once(
    rabbitmq_broker: RabbitmqBroker,
    rabbitmq_worker: Worker,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an actor that raises on one message
    def broken(self: Customer, command: Any) -> None:
        raise RuntimeError("payment gateway down")

    monkeypatch.setattr(Customer, "register", broken)
    command = register_customer("Broken")
    publish(command)
    # When its retries are exhausted
    store = DeadLetterStore()
    wait_for(lambda: store.get(str(command.message_id)) is not None)
    entry = store.get(str(command.message_id))
    # Then it is dead-lettered with the final traceback, after every attempt
    assert entry is not None
    assert entry["error_type"] == "RuntimeError"
    assert entry["attempts"] == settings.max_retries + 1
    assert "payment gateway down" in entry["traceback"]
    assert "in broken" in entry["traceback"]
    # When the cause is fixed and it is replayed
    monkeypatch.undo()
    report = replay([entry["_id"]], by="ops")
    settle(rabbitmq_broker, rabbitmq_worker)
    # Then it is processed once in effect, and show tells its history
    assert report.replayed == [entry["_id"]]
    assert len(EventStore().load(command.stream_id())) == 1
    shown = sagaworks(settings, "dlq", "show", entry["_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["state"] == "resolved"  # replayed, then processed: no longer dead
    assert [h["event"] for h in doc["history"]] == ["failed", "replayed", "resolved"]
    assert doc["history"][1]["by"] == "ops"
    assert sagaworks(settings, "dlq", "list", "--json").stdout.strip() == "[]"


def test_parked_stream_waits_while_others_flow_and_replay_releases_it(
    rabbitmq_broker: RabbitmqBroker,
    rabbitmq_worker: Worker,
    settings: Settings,
    database: Database[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a projection that fails for good on one order's first event
    customer = register_customer()
    publish(customer).wait(10)
    poisoned, healthy = place_order(customer.customer_id), place_order(customer.customer_id)
    original = OrderSummaries.change

    def change(self: OrderSummaries, event: Any) -> Any:
        if isinstance(event, OrderPlaced) and event.order_id == poisoned.order_id:
            raise PermanentError("poisoned event")
        return original(self, event)

    monkeypatch.setattr(OrderSummaries, "change", change)
    # When both orders are placed, then both get later events
    publish(poisoned)
    publish(healthy)
    settle(rabbitmq_broker, rabbitmq_worker)
    for order in (poisoned, healthy):
        publish(CancelOrder(order_id=order.order_id, reason="test"))
    settle(rabbitmq_broker, rabbitmq_worker)
    # Then the healthy stream is applied, the poisoned one parked, its later event held
    summaries = database[OrderSummaries.collection_name]
    healthy_doc = summaries.find_one({"_id": str(healthy.order_id)})
    assert healthy_doc is not None
    assert healthy_doc["_version"] == stream_version(database, order_stream(healthy.order_id))
    assert summaries.find_one({"_id": str(poisoned.order_id)}) is None
    [parked] = parked_streams(database, OrderSummaries.collection_name)
    assert parked["stream_id"] == order_stream(poisoned.order_id)
    assert parked["held"] >= 1
    queue = settings.queue_prefix + "projections.order_summary"
    dead = DeadLetterStore().find(Selector(queue=queue))
    assert len(dead) == 1  # the held events were not dead-lettered too
    # When the cause is fixed and the parked event replayed
    monkeypatch.undo()
    replay([dead[0]["_id"]], by="ops")
    settle(rabbitmq_broker, rabbitmq_worker)
    # Then the stream is applied in order up to its head and released
    doc = summaries.find_one({"_id": str(poisoned.order_id)})
    assert doc is not None
    assert doc["_version"] == stream_version(database, order_stream(poisoned.order_id))
    assert doc["status"] == "cancelled"
    assert parked_streams(database, OrderSummaries.collection_name) == []


def test_nothing_is_lost_under_injected_failures(
    rabbitmq_broker: RabbitmqBroker, settings: Settings, database: Database[Document]
) -> None:
    # Given an actor that fails some messages for good, some always, some once
    processed = database["processed"]
    queue = settings.queue_prefix + "chaos"

    def chaos(kind: str) -> None:
        message = dramatiq.middleware.CurrentMessage.get_current_message()
        assert message is not None
        if kind == "permanent":
            raise PermanentError("refused")
        if kind == "broken":
            raise RuntimeError("always broken")
        if kind == "flaky" and not message.options.get("retries"):
            raise RuntimeError("once")
        processed.update_one({"_id": message.message_id}, {"$set": {"kind": kind}}, upsert=True)

    actor = dramatiq.actor(
        chaos,
        broker=rabbitmq_broker,
        queue_name=queue,
        actor_name=f"chaos_{settings.queue_prefix}",
        throws=(PermanentError,),
        max_retries=2,
        min_backoff=10,
        max_backoff=50,
    )
    kinds = ["ok"] * 16 + ["flaky", "flaky", "permanent", "broken"]
    worker = Worker(rabbitmq_broker, worker_timeout=100, worker_threads=8)
    worker.start()
    try:
        # When thousands of messages are published, with some undecodable bodies besides
        published = [actor.send(kinds[i % len(kinds)]).message_id for i in range(3000)]
        for _ in range(20):
            raw_publish(queue, b"garbage")
        settle(rabbitmq_broker, worker, timeout=180)
        time.sleep(settings.dead_letter_grace_seconds + 0.5)
        ingested = Ingester(AMQP_URL, [queue + ".XQ"]).run_once()
    finally:
        worker.stop()
    # Then every message is processed or in the dead-letter store, none both, XQ is empty
    done = {d["_id"] for d in processed.find({}, {"_id": 1})}
    store = DeadLetterStore()
    dead = set(store.ids(Selector(queue=queue)))
    raw = dead - set(published)
    assert done | (dead - raw) == set(published)
    assert not done & dead
    assert len(dead - raw) == 3000 // len(kinds) * 2
    assert len(raw) >= 1  # identical garbage bodies dead-lettered in the same second merge
    assert sum(store.get(r)["count"] for r in raw) == 20
    assert rabbitmq_broker.get_queue_message_counts(queue)[2] == 0
    assert ingested[queue + ".XQ"] >= 20
    for suffix in ("", ".DQ", ".XQ"):
        rabbitmq_broker.channel.queue_delete(queue + suffix)


def test_status_shows_dead_letters_and_fails_the_health_check(
    rabbitmq_broker: RabbitmqBroker, rabbitmq_worker: Worker, settings: Settings
) -> None:
    # Given a healthy deployment
    publish(register_customer()).wait(10)
    settle(rabbitmq_broker, rabbitmq_worker)
    healthy = sagaworks(settings, "status", "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    # When a message is dead-lettered
    queue = settings.queue_prefix + "customers.commands"
    message_id, body = envelope(queue, "handle_customer_command", "{not json")
    raw_publish(queue, body)
    wait_for(lambda: DeadLetterStore().get(message_id) is not None)
    # Then status says so, per queue, exits non-zero, and exports it as metrics
    shown = sagaworks(settings, "status", "--json")
    assert shown.returncode == 1
    report = json.loads(shown.stdout)
    [figures] = [q for q in report["queues"] if q["name"] == queue]
    assert figures["dead_letters"] == 1
    assert set(report["projections"]) >= {"order_summary", "customer_profile"}
    metrics = sagaworks(settings, "status", "--prometheus").stdout
    assert f'sagaworks_queue_dead_letters{{queue="{queue}"}} 1.0' in metrics


def test_dead_letter_whose_record_was_lost_is_ingested_from_xq(
    rabbitmq_broker: RabbitmqBroker,
    rabbitmq_worker: Worker,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a store that cannot record while a message is dead-lettered
    def down(*_: Any, **__: Any) -> None:
        raise ConnectionError("mongodb is down")

    monkeypatch.setattr(DeadLetterStore, "record", down)
    queue = settings.queue_prefix + "orders.commands"
    message_id, body = envelope(queue, "handle_order_command", "{not json")
    raw_publish(queue, body)
    wait_for(lambda: rabbitmq_broker.get_queue_message_counts(queue)[2] == 1)
    # When the store is back and the ingester drains .XQ
    monkeypatch.undo()
    wait_for(lambda: DeadLetterStore().get(message_id) is not None, timeout=20)
    # Then the message is in the store, recorded from its .XQ copy, and .XQ is emptied (the
    # copy is acked only once the store has it, so a moment after)
    entry = DeadLetterStore().get(message_id)
    assert entry is not None
    assert entry["source"] == "xq"
    assert entry["replayable"] is True
    wait_for(lambda: rabbitmq_broker.get_queue_message_counts(queue)[2] == 0, timeout=10)
