"""The order service on the real RabbitMQ: delivery, idempotency, ordering, concurrency, outbox."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pika

from messages import caused_by, encode
from messages.customers import RegisterCustomer
from messages.orders import CancelOrder, ConfirmOrder, OrderConfirmed, order_stream
from readstore.consistency import ConsistencyToken
from readstore.customers import get_customer_profile
from readstore.eventlog import commits, read_stream
from readstore.orders import get_order
from tests.conftest import AMQP_URL
from tests.support import order_placed, place_order, register_customer, settle
from workers.ops.verify import verify_read_models
from workers.publishing import envelope, publish
from workers.runtime.broker import queue_name
from workers.subscribers.projections import project_customer_profile, project_order_summary
from workers.write import commands
from workers.write.eventstore import EventStore
from workers.write.outbox import Relay, subscribers_of

README = Path(__file__).parents[2] / "README.md"


def registered_customer(broker, worker, **extra):
    customer = register_customer(**extra)
    publish(customer)
    settle(broker, worker)
    return customer


def placed_order(broker, worker, customer_id, *lines):
    command = place_order(customer_id, *lines)
    receipt = publish(command)
    settle(broker, worker)
    return command, receipt.wait(5)


def test_command_on_rabbitmq_reaches_every_subscriber_and_the_queries(
    rabbitmq_broker, rabbitmq_worker
):
    # Given a customer registered through RabbitMQ
    customer = registered_customer(rabbitmq_broker, rabbitmq_worker, name="Grace")

    # When they place an order
    command, token = placed_order(
        rabbitmq_broker, rabbitmq_worker, customer.customer_id, ("SKU-1", 2, "3.25")
    )

    # Then its events reached both projections and the queries answer from them
    assert token == ConsistencyToken(order_stream(command.order_id), 1)
    order = get_order(command.order_id, token)
    assert order.value is not None and not order.stale
    assert (order.value.customer_name, str(order.value.total)) == ("Grace", "6.50")
    profile = get_customer_profile(customer.customer_id, token).value
    assert profile is not None and profile.orders_placed == 1


def test_consistency_token_makes_the_read_wait_for_the_write(rabbitmq_broker, rabbitmq_worker):
    # Given an order at version 1, and a query already waiting for version 2
    customer = registered_customer(rabbitmq_broker, rabbitmq_worker)
    command, token = placed_order(rabbitmq_broker, rabbitmq_worker, customer.customer_id)
    answers = []
    wanted = ConsistencyToken(token.stream_id, 2)
    reader = threading.Thread(
        target=lambda: answers.append(get_order(command.order_id, wanted, timeout=15))
    )
    reader.start()
    time.sleep(0.3)

    # When the write that makes version 2 happens
    publish(ConfirmOrder(order_id=command.order_id))
    reader.join()

    # Then the read waited for it, and answers fresh
    assert not answers[0].stale
    assert answers[0].value.status == "confirmed"
    assert answers[0].value.version == 2


def test_read_past_the_timeout_says_it_is_stale(rabbitmq_broker, rabbitmq_worker):
    # Given an order at version 1
    customer = registered_customer(rabbitmq_broker, rabbitmq_worker)
    command, token = placed_order(rabbitmq_broker, rabbitmq_worker, customer.customer_id)

    # When a read asks for a version that never comes
    answer = get_order(command.order_id, ConsistencyToken(token.stream_id, 9), timeout=0.3)

    # Then it answers with what it has, and says so
    assert answer.stale
    assert answer.value is not None and answer.value.version == 1


def test_command_delivered_twice_makes_one_commit(rabbitmq_broker, rabbitmq_worker, database):
    # Given a registered customer
    customer = registered_customer(rabbitmq_broker, rabbitmq_worker)
    command = place_order(customer.customer_id)

    # When RabbitMQ delivers the same command twice
    rabbitmq_broker.enqueue(envelope(command))
    rabbitmq_broker.enqueue(envelope(command))
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then there is one commit, and the read models count the order once
    stream = order_stream(command.order_id)
    assert commits(database).count_documents({"stream_id": stream}) == 1
    profile = get_customer_profile(customer.customer_id).value
    assert profile is not None and profile.orders_placed == 1


def test_event_delivered_three_times_is_applied_once(rabbitmq_broker, rabbitmq_worker, database):
    # Given a placed order
    customer = registered_customer(rabbitmq_broker, rabbitmq_worker)
    command, _ = placed_order(rabbitmq_broker, rabbitmq_worker, customer.customer_id)
    placed = read_stream(database, order_stream(command.order_id))[0]

    # When its event is delivered three more times to each subscriber
    for _ in range(3):
        for actor in subscribers_of(placed):
            actor.send(encode(placed))
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the cross-stream profile counted it once
    profile = get_customer_profile(customer.customer_id).value
    assert profile is not None and profile.orders_placed == 1
    assert verify_read_models(database).consistent


def test_events_of_one_stream_out_of_order_end_in_the_right_state(
    rabbitmq_broker, rabbitmq_worker, database
):
    # Given an order placed and confirmed in the store, none of its events delivered yet
    customer = register_customer()
    command = place_order(customer.customer_id, ("SKU-1", 1, "4.00"))
    store, stream = EventStore(), order_stream(command.order_id)
    placed = order_placed(command)
    confirmed = caused_by(
        OrderConfirmed,
        command,
        order_id=command.order_id,
        customer_id=customer.customer_id,
        total=Decimal("4.00"),
    )
    first = store.append(stream, 0, [placed]).events[0]
    second = store.append(stream, 1, [confirmed]).events[0]

    # When version 2 arrives before version 1, and version 1 after it
    for event in (second, first):
        project_order_summary.send(encode(event))
        project_customer_profile.send(encode(event))
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the gap was healed from the store and both models end confirmed, counted once
    order = get_order(command.order_id).value
    assert order is not None and (order.status, order.version) == ("confirmed", 2)
    profile = get_customer_profile(customer.customer_id).value
    assert (profile.orders_placed, profile.orders_confirmed) == (1, 1)
    assert profile.total_spent == Decimal("4.00")


def test_concurrent_commands_on_one_order_lose_no_update(
    rabbitmq_broker, rabbitmq_worker, database
):
    # Given ten placed orders
    customer = registered_customer(rabbitmq_broker, rabbitmq_worker)
    orders = [place_order(customer.customer_id) for _ in range(10)]
    for command in orders:
        publish(command)
    settle(rabbitmq_broker, rabbitmq_worker)

    # When each gets a confirm and a cancel at the same moment
    for command in orders:
        publish(ConfirmOrder(order_id=command.order_id))
        publish(CancelOrder(order_id=command.order_id, reason="race"))
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then every stream is gap-free with exactly one outcome, and the read model agrees
    for command in orders:
        events = read_stream(database, order_stream(command.order_id))
        assert [e.stream_version for e in events] == [1, 2]
        outcome = {"OrderConfirmed": "confirmed", "OrderCancelled": "cancelled"}
        order = get_order(command.order_id).value
        assert order.status == outcome[events[1].type_name()]
    assert verify_read_models(database).consistent


def test_relay_repairs_a_crash_between_commit_and_send(rabbitmq_broker, rabbitmq_worker, database):
    # Given a command committed by a process that died before sending its events
    customer = registered_customer(rabbitmq_broker, rabbitmq_worker)
    command = place_order(customer.customer_id)
    sent = []
    real_dispatch = commands.dispatch
    commands.dispatch = lambda commit, store: sent.append(commit)  # the crash: nothing sent
    try:
        commands.execute(command, EventStore())
    finally:
        commands.dispatch = real_dispatch
    assert get_order(command.order_id).value is None

    # When the relay runs after its grace period
    time.sleep(0.6)
    redispatched = Relay(EventStore(), timedelta(seconds=0.5)).run_once()
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the events reached the read models, the commit is receipted, and the relay finds
    # nothing more to send
    assert redispatched == 1
    assert get_order(command.order_id).value.status == "pending"
    assert EventStore().count_undispatched() == 0
    assert Relay(EventStore(), timedelta(seconds=0.5)).run_once() == 0


def readme_example() -> dict:
    text = README.read_text()
    block = text.split("<!-- wire-format-example", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", block, re.S).group(1))


def test_message_built_from_the_readme_wire_format_is_processed(rabbitmq_broker, rabbitmq_worker):
    # Given the README's example, and the customer it names
    body = readme_example()
    data = body["args"][0]["data"]
    publish(RegisterCustomer(customer_id=data["customer_id"], name="Ada", email="a@example.com"))
    settle(rabbitmq_broker, rabbitmq_worker)

    # When it is published with plain pika, exactly as documented (queue name prefixed here)
    queue = queue_name(body["queue_name"])
    body["queue_name"] = queue
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(
        "", queue, json.dumps(body).encode(), pika.BasicProperties(delivery_mode=2)
    )
    connection.close()
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then the order exists in the read model, with the documented lines and total
    order = get_order(data["order_id"]).value
    assert order is not None
    assert (order.customer_name, str(order.total), len(order.lines)) == ("Ada", "44.80", 2)
