"""Hostile input on the real RabbitMQ: no envelope stops a worker or corrupts the dead letters.

Messages are published with plain pika, as an upstream in any language would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from dramatiq import Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pymongo.database import Database
from pymongo.errors import AutoReconnect

from messages import encode
from messages.inventory import AddStock, ReserveStock, StockLine, StockReserved
from messages.payments import PaymentCharged
from readstore.customers import get_customer_profile
from readstore.db import Document
from tests.conftest import AMQP_URL
from tests.hostile import (
    body,
    customer_envelope,
    envelope,
    publish_many,
    publish_raw,
    queue_depth,
    threads_alive,
    wait_for,
)
from workers.deadletters.ingest import Ingester
from workers.deadletters.record import from_envelope
from workers.deadletters.store import DeadLetterStore
from workers.runtime.admission import upstream_exchange
from workers.runtime.settings import Settings


@pytest.fixture
def two_thread_worker(rabbitmq_broker: RabbitmqBroker) -> Iterator[Worker]:
    worker = Worker(rabbitmq_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


def dead_letters(database: Database[Document]) -> list[Document]:
    return list(database["dead_letters"].find())


def test_envelopes_lying_about_their_queue_are_dead_lettered_and_the_worker_keeps_serving(
    two_thread_worker: Worker, settings: Settings, database: Database[Document]
) -> None:
    # Given a worker with two threads serving the customers' command queue
    queue = settings.queue_prefix + "customers.commands"
    # When three envelopes arrive whose queue_name names another queue (or none)
    liars = [
        customer_envelope(queue, queue_name=settings.queue_prefix + "orders.commands"),
        customer_envelope(queue, queue_name="elsewhere"),
        customer_envelope(queue, queue_name=queue + ".DQ"),
    ]
    publish_many(queue, [body(doc) for doc in liars])
    # And then a valid registration
    good = customer_envelope(queue)
    publish_raw(queue, body(good))
    # Then the valid one is served, each liar is dead-lettered with a reason naming the field
    customer_id = good["args"][0]["data"]["customer_id"]
    wait_for(lambda: get_customer_profile(uuid.UUID(customer_id)).value is not None)
    wait_for(lambda: len(dead_letters(database)) == 3)
    assert all(d["reason"].startswith("queue_name:") for d in dead_letters(database))
    # And no liar ran its actor, no thread died, nothing is left unacknowledged
    for liar in liars:
        liar_id = uuid.UUID(liar["args"][0]["data"]["customer_id"])
        assert get_customer_profile(liar_id).value is None
    assert threads_alive(two_thread_worker)[0] == 2
    assert queue_depth(queue) == 0


def test_message_id_that_is_a_query_object_does_not_overwrite_another_dead_letter(
    rabbitmq_worker: Worker, settings: Settings, database: Database[Document]
) -> None:
    # Given a dead letter already in the store
    queue = settings.queue_prefix + "customers.commands"
    first = envelope(queue, "handle_customer_command", ["not a message"])
    publish_raw(queue, body(first))
    wait_for(lambda: len(dead_letters(database)) == 1)
    before = database["dead_letters"].find_one({"_id": first["message_id"]})
    # When an envelope whose message_id is a MongoDB operator fails
    hostile = customer_envelope(queue, message_id={"$gt": ""})
    publish_raw(queue, body(hostile))
    # Then it gets an entry of its own, and the first one is untouched
    wait_for(lambda: len(dead_letters(database)) == 2)
    after = database["dead_letters"].find_one({"_id": first["message_id"]})
    assert after is not None and before is not None
    assert (after["reason"], after["count"]) == (before["reason"], before["count"])
    [other] = [d for d in dead_letters(database) if d["_id"] != first["message_id"]]
    assert isinstance(other["_id"], str) and other["reason"].startswith("message_id:")


def xq_copies(queue: str) -> list[bytes]:
    valid = envelope(queue, "handle_order_command", ["a valid envelope whose actor failed"])
    return [
        body(envelope(queue, "handle_order_command", [], message_id={"$gt": ""})),
        body(envelope(queue, "handle_order_command", [], queue_name=42)),
        body(envelope(queue, "handle_order_command", [], options=["eta"])),
        b"\xff\xfe not even UTF-8",
        body(valid),
    ]


def test_malformed_envelopes_in_xq_do_not_block_the_ones_behind_them(
    rabbitmq_broker: RabbitmqBroker, settings: Settings, database: Database[Document]
) -> None:
    # Given malformed copies in a .XQ queue, ahead of a well-formed one
    queue = settings.queue_prefix + "orders.commands"
    rabbitmq_broker.declare_queue(queue, ensure=True)
    publish_many(queue + ".XQ", xq_copies(queue))
    # When the ingester drains it
    Ingester(AMQP_URL, [queue + ".XQ"], grace=0).run_once()
    # Then each copy is in the store on its own, with a reason, and .XQ is empty
    entries = dead_letters(database)
    assert len(entries) == 5
    assert all(isinstance(e["_id"], str) and e["reason"] for e in entries)
    reasons = " | ".join(sorted(e["reason"] for e in entries))
    for field in ("message_id:", "queue_name:", "options:", "body:"):
        assert field in reasons
    assert queue_depth(queue + ".XQ") == 0


class FlakyStore(DeadLetterStore):
    """A store whose first batch write fails, as on a MongoDB failover."""

    failures = 1

    def record_many(self, failures: Any, *, copy_in_xq: bool) -> int:
        if FlakyStore.failures:
            FlakyStore.failures -= 1
            raise AutoReconnect("primary stepped down")
        return super().record_many(failures, copy_in_xq=copy_in_xq)


def test_a_failed_ingest_pass_keeps_the_recorded_final_exception(
    rabbitmq_broker: RabbitmqBroker, settings: Settings, database: Database[Document]
) -> None:
    # Given a failure the middleware recorded with its final exception, its copy in .XQ
    queue = settings.queue_prefix + "orders.commands"
    rabbitmq_broker.declare_queue(queue, ensure=True)
    failed = envelope(queue, "handle_order_command", ["whatever"])
    message = __import__("dramatiq").Message.decode(body(failed))
    recorded = from_envelope(message, KeyError("the final exception"), source="middleware")
    DeadLetterStore().record(recorded, copy_in_xq=True)
    other = envelope(queue, "handle_order_command", ["no record for this one"])
    publish_many(queue + ".XQ", [body(failed), body(other)])
    # When one ingest pass fails half-way and the next one succeeds
    with pytest.raises(AutoReconnect):
        Ingester(AMQP_URL, [queue + ".XQ"], grace=0, store=FlakyStore()).run_once()
    Ingester(AMQP_URL, [queue + ".XQ"], grace=0).run_once()
    # Then the recorded cause is still the final exception, and both copies are ingested
    entry = database["dead_letters"].find_one({"_id": failed["message_id"]})
    assert entry is not None
    assert (entry["error_type"], entry["reason"]) == ("KeyError", "'the final exception'")
    assert "the final exception" in entry["traceback"] or entry["traceback"] is None
    assert database["dead_letters"].count_documents({}) == 2
    assert queue_depth(queue + ".XQ") == 0


def upstream_publish(settings: Settings, base_queue: str, message: Any) -> dict[str, Any]:
    queue = settings.queue_prefix + base_queue
    actor = {
        "inventory.commands": "handle_inventory_command",
        "sagas.fulfilment": "run_fulfilment_saga",
    }[base_queue]
    doc = envelope(queue, actor, [encode(message)])
    publish_raw(queue, body(doc), exchange=upstream_exchange(settings.queue_prefix))
    return doc


def bound_to_upstream(broker: RabbitmqBroker, settings: Settings) -> None:
    """Wait until the worker declared its command queues (and bound them to the exchange)."""
    for base in ("customers", "orders", "inventory", "payments"):
        broker.declare_queue(f"{settings.queue_prefix}{base}.commands", ensure=True)


def test_upstream_may_publish_public_commands_but_not_internal_ones_or_events(
    rabbitmq_broker: RabbitmqBroker,
    rabbitmq_worker: Worker,
    settings: Settings,
    database: Database[Document],
) -> None:
    # Given a worker whose command queues are bound to the upstream exchange
    bound_to_upstream(rabbitmq_broker, settings)
    order_id = uuid.uuid4()
    # When an upstream publishes a public command, an internal command and an event
    upstream_publish(settings, "inventory.commands", AddStock(sku="SKU-U", quantity=3))
    lines = (StockLine(sku="SKU-U", quantity=1),)
    forged = upstream_publish(
        settings, "inventory.commands", ReserveStock(order_id=order_id, lines=lines)
    )
    event = upstream_publish(
        settings, "inventory.commands", StockReserved(order_id=order_id, lines=lines)
    )
    # Then the public command is served, the other two are dead-lettered with the reason
    wait_for(lambda: len(dead_letters(database)) == 2)
    by_body = {json.loads(d["raw_body"])["message_id"]: d for d in dead_letters(database)}
    assert "internal" in by_body[forged["message_id"]]["reason"]
    assert "is an event" in by_body[event["message_id"]]["reason"]
    assert {d["error_type"] for d in by_body.values()} == {"UnauthorizedMessage"}
    wait_for(lambda: database["commits"].count_documents({"stream_id": "sku-SKU-U"}) >= 1)
    assert database["commits"].count_documents({"stream_id": {"$regex": "^reservation-"}}) == 0


def test_upstream_exchange_reaches_no_saga_queue_and_a_stray_binding_is_refused(
    rabbitmq_broker: RabbitmqBroker,
    rabbitmq_worker: Worker,
    settings: Settings,
    database: Database[Document],
) -> None:
    # Given the upstream exchange, which routes to command queues only
    bound_to_upstream(rabbitmq_broker, settings)
    rabbitmq_broker.declare_queue(settings.queue_prefix + "sagas.fulfilment", ensure=True)
    exchange = upstream_exchange(settings.queue_prefix)
    saga_queue = settings.queue_prefix + "sagas.fulfilment"
    charged = PaymentCharged(order_id=uuid.uuid4(), amount="10.00", reference="r-1")
    # When an upstream publishes an event onto the saga queue through it
    # Then RabbitMQ cannot route it
    with pytest.raises(pika.exceptions.UnroutableError):
        upstream_publish(settings, "sagas.fulfilment", charged)
    # And when a misconfigured binding lets it through, the worker refuses it
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    connection.channel().queue_bind(saga_queue, exchange, routing_key=saga_queue)
    connection.close()
    upstream_publish(settings, "sagas.fulfilment", charged)
    wait_for(lambda: len(dead_letters(database)) == 1)
    [entry] = dead_letters(database)
    assert entry["error_type"] == "UnauthorizedMessage"
    assert "takes no message from upstream" in entry["reason"]
    assert database["sagas"].count_documents({}) == 0
