"""Events fanned out by RabbitMQ, and a handler's publishes confirmed together, on RabbitMQ."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import dramatiq
import pika
import pytest
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware

from messages.errors import PermanentError
from messages.orders import OrderPlaced
from tests.conftest import AMQP_URL
from tests.support import order_placed, place_order, register_customer, settle
from workers.deadletters.ingest import Ingester
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.publishing import publish
from workers.runtime import confirms
from workers.runtime.broker import confirmed_together, queue_name
from workers.runtime.prefix import events_exchange
from workers.subscribers import fulfilment as sagas
from workers.workloads.instruments import Ledger
from workers.write import outbox
from workers.write.outbox import envelope_id, subscribers_of


class Recorder(Middleware):
    """What the worker processed (actor, queue, id) and how this process published."""

    def __init__(self) -> None:
        self.processed: list[tuple[str, str, str]] = []
        self.publishes = 0
        self.published: list[Any] = []
        self.lock = threading.Lock()

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        with self.lock:
            self.processed.append((message.actor_name, message.queue_name, message.message_id))

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        with self.lock:
            self.publishes += 1
            self.published.append(message)


@pytest.fixture
def recorder(rabbitmq_broker):
    recorder = Recorder()
    rabbitmq_broker.add_middleware(recorder)
    return recorder


@pytest.fixture
def confirm_waits() -> Any:
    waits: list[tuple[str, int]] = []

    def observe(_seconds: float, publishes: int) -> None:
        waits.append((threading.current_thread().name, publishes))

    confirms.WAIT_OBSERVERS.append(observe)
    yield waits
    confirms.WAIT_OBSERVERS.remove(observe)


def test_event_is_one_publish_that_reaches_each_subscriber_as_its_own_envelope(
    rabbitmq_broker, rabbitmq_worker, recorder
):
    # Given an event with several subscribers
    event = order_placed(place_order(uuid.uuid4())).recorded("order-x", 1)
    actors = subscribers_of(event)
    assert len(actors) >= 3

    # When the outbox sends it
    published = outbox.send(event)
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then it was published once, and each subscriber got the envelope a copy of its own had
    assert (published, recorder.publishes) == (1, 1)
    expected = {(a.actor_name, a.queue_name, envelope_id(event, a)) for a in actors}
    assert set(recorder.processed) == expected and len(recorder.processed) == len(expected)


def test_fanned_out_event_that_fails_once_is_retried_on_its_own_queue(
    rabbitmq_broker, rabbitmq_worker, recorder
):
    # Given a subscriber that fails on its first attempt, beside the projections
    attempts: Counter[str] = Counter()

    @dramatiq.actor(broker=rabbitmq_broker, queue_name=queue_name("projections.flaky"))
    def flaky(payload: dict[str, Any]) -> None:
        attempts[payload["message_id"]] += 1
        if attempts[payload["message_id"]] == 1:
            raise RuntimeError("first attempt fails")

    outbox.subscribe(flaky, [OrderPlaced])
    try:
        event = order_placed(place_order(uuid.uuid4())).recorded("order-y", 1)

        # When the event is sent once
        outbox.send(event)
        settle(rabbitmq_broker, rabbitmq_worker)
    finally:
        outbox.SUBSCRIBERS[:] = [s for s in outbox.SUBSCRIBERS if s[0] is not flaky]

    # Then the retry came back to the flaky subscriber's queue, under its own id, and the
    # other subscribers took the event once each
    mine = [p for p in recorder.processed if p[0] == "flaky"]
    assert mine == [("flaky", flaky.queue_name, envelope_id(event, flaky))] * 2
    others = Counter(p[0] for p in recorder.processed if p[0] != "flaky")
    assert others and set(others.values()) == {1}


def test_publishes_in_one_block_share_one_confirm_wait(rabbitmq_broker, confirm_waits):
    # Given three messages for a queue
    target = dramatiq.actor(broker=rabbitmq_broker, queue_name=queue_name("t.confirms"))(print)
    marks: list[str] = []

    # When they are published in one block, with work waiting for their confirms
    with confirmed_together(rabbitmq_broker):
        for i in range(3):
            target.send(i)
        confirms.after_confirms(lambda: marks.append("confirmed"))
        assert marks == []

    # Then one wait covered the three, the waiting work ran after it, and all three arrived
    assert [n for _, n in confirm_waits] == [3]
    assert marks == ["confirmed"]
    assert rabbitmq_broker.get_queue_message_counts(target.queue_name)[0] == 3


def test_refused_publish_fails_the_block_and_skips_what_waited(rabbitmq_broker):
    # Given a block whose publish cannot be routed anywhere
    marks: list[str] = []

    def unroutable() -> None:
        with confirmed_together(rabbitmq_broker) as pipeline:
            nowhere = f"nowhere-{uuid.uuid4()}"
            pipeline.publish("amq.direct", nowhere, b"{}", pika.BasicProperties())
            confirms.after_confirms(lambda: marks.append("marked"))

    # When it ends
    with pytest.raises(ConnectionClosed):
        unroutable()

    # Then it raised (the message being handled would be retried) and nothing was marked
    assert marks == []


def test_saga_step_that_sends_two_messages_waits_for_confirms_once(
    rabbitmq_broker, rabbitmq_worker, settings
):
    # Given the saga on: a placed order makes it send ReserveStock (its step deadline is a
    # field of the saga's document, swept, not a message)
    ledger = Ledger()
    ledger.install(rabbitmq_broker)
    sagas.configure(settings.model_copy(update={"fulfilment_saga": True}))
    try:
        customer = register_customer()
        publish(customer)
        settle(rabbitmq_broker, rabbitmq_worker)

        # When an order is placed and everything it causes has run
        publish(place_order(customer.customer_id))
        settle(rabbitmq_broker, rabbitmq_worker)
    finally:
        sagas.configure(settings)
        ledger.uninstall()

    # Then no handled message waited for confirms more than once, the saga's two included
    steps = dict(ledger.snapshot())
    saga = steps["OrderPlaced -> run_fulfilment_saga"]
    assert (saga.deliveries, saga.publishes, saga.confirm_waits) == (1, 1, 1)
    handled = [s for name, s in steps.items() if not name.startswith("(")]
    assert all(s.confirm_waits <= s.deliveries for s in handled)


def test_events_exchange_routes_by_event_type(rabbitmq_broker, rabbitmq_worker, recorder):
    # Given a customer registered (its event bound the subscribers of CustomerRegistered)
    publish(register_customer())
    settle(rabbitmq_broker, rabbitmq_worker)

    # When the exchange's bindings are inspected through a passive declaration
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().exchange_declare(events_exchange(), passive=True)
    finally:
        connection.close()

    # Then the exchange exists, and only the subscribers of CustomerRegistered took it
    takers = {actor for actor, _, _ in recorder.processed if actor.startswith("project_")}
    assert takers == {"project_customer_profile", "project_customer_registrations"}


def test_fanned_out_event_failing_on_first_delivery_is_recorded_once(
    rabbitmq_broker, rabbitmq_worker, settings
):
    # Given a subscriber that fails for good (its .XQ copy is the shared body as delivered)
    @dramatiq.actor(
        broker=rabbitmq_broker,
        queue_name=queue_name("projections.broken"),
        throws=(PermanentError,),
    )
    def broken(payload: dict[str, Any]) -> None:
        raise PermanentError("cannot apply")

    outbox.subscribe(broken, [OrderPlaced])
    try:
        # When an event is sent, fails, and the .XQ ingester passes over the copy
        outbox.send(order_placed(place_order(uuid.uuid4())).recorded("order-z", 1))
        settle(rabbitmq_broker, rabbitmq_worker)
    finally:
        outbox.SUBSCRIBERS[:] = [s for s in outbox.SUBSCRIBERS if s[0] is not broken]
    Ingester(AMQP_URL, [broken.queue_name + ".XQ"], grace=0).run_once()

    # Then the failure is one record, under the subscriber's own envelope, and .XQ is empty
    recorded = DeadLetterStore().find(Selector(state=None))
    assert [(d["actor"], d["queue"]) for d in recorded] == [("broken", broken.queue_name)]
    assert rabbitmq_broker.get_queue_message_counts(broken.queue_name)[2] == 0


def test_shared_envelope_enqueued_again_is_fanned_out_again(
    rabbitmq_broker, rabbitmq_worker, recorder
):
    # Given an event sent once, and its envelope as a middleware's after_enqueue saw it
    event = order_placed(place_order(uuid.uuid4())).recorded("order-w", 1)
    outbox.send(event)
    settle(rabbitmq_broker, rabbitmq_worker)
    [shared] = recorder.published

    # When that envelope is enqueued again (as fault injection duplicates a message)
    rabbitmq_broker.enqueue(shared)
    settle(rabbitmq_broker, rabbitmq_worker)

    # Then every subscriber took it twice under its own envelope, and no queue was declared
    # under the exchange's name
    expected = {(a.actor_name, a.queue_name, envelope_id(event, a)) for a in subscribers_of(event)}
    assert Counter(recorder.processed) == dict.fromkeys(expected, 2)
    assert events_exchange() not in rabbitmq_broker.get_declared_queues()
