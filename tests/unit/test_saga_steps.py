"""The fulfilment saga's steps as pure functions: transitions, duplicates and late replies."""

import uuid
from datetime import timedelta
from decimal import Decimal

from messages import Message
from messages.fulfilment import StepDeadlinePassed
from messages.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from messages.orders import CancelOrder, ConfirmOrder, OrderCancelled, OrderConfirmed, OrderPlaced
from messages.payments import ChargePayment, PaymentCharged, PaymentDeclined, RefundPayment
from sagas.fulfilment import Fulfilment, start, step
from tests.support import ADDRESS, place_order

LINES = (StockLine(sku="A", quantity=2),)


def placed() -> OrderPlaced:
    command = place_order(uuid.uuid4(), ("A", 2, "5.00"))
    return OrderPlaced(
        order_id=command.order_id,
        customer_id=command.customer_id,
        customer_name="Ada",
        lines=command.lines,
        shipping_address=ADDRESS,
        total=Decimal("10.00"),
        correlation_id=command.message_id,
    )


def started() -> tuple[OrderPlaced, Fulfilment]:
    event = placed()
    state, _ = start(event, step_seconds=5)
    return event, state


def kinds(messages: list[Message]) -> list[type[Message]]:
    return [type(m) for m in messages]


def reserved(state: Fulfilment) -> StockReserved:
    return StockReserved(order_id=state.order_id, lines=LINES)


def charged(state: Fulfilment) -> PaymentCharged:
    return PaymentCharged(order_id=state.order_id, amount=state.total, reference="r")


def deadline(state: Fulfilment, name: str) -> StepDeadlinePassed:
    return StepDeadlinePassed(order_id=state.order_id, step=name, due_at=state.deadline)


def run(state: Fulfilment, *messages: Message) -> tuple[Fulfilment, list[Message]]:
    sent: list[Message] = []
    for message in messages:
        state, out = step(state, message)
        sent += out
    return state, sent


def test_placed_order_reserves_stock_with_a_deadline():
    # Given a placed order
    event = placed()

    # When the saga starts
    state, out = start(event, step_seconds=5)

    # Then it reserves the lines and sends itself the step's deadline, all in its conversation
    assert state.status == "reserving"
    assert kinds(out) == [ReserveStock, StepDeadlinePassed]
    assert state.deadline == event.occurred_at + timedelta(seconds=5)
    assert all(m.correlation_id == event.correlation_id for m in out)
    assert all(m.causation_id == event.message_id for m in out)


def test_reserved_stock_is_charged():
    # Given a saga reserving stock
    _, state = started()

    # When the stock is reserved
    state, out = step(state, reserved(state))

    # Then the order's total is charged, with a new deadline
    assert state.status == "charging"
    assert kinds(out) == [ChargePayment, StepDeadlinePassed]
    assert out[0].amount == Decimal("10.00")  # type: ignore[attr-defined]


def test_charged_payment_commits_stock_and_confirms():
    # Given a saga charging
    _, state = started()
    state, _ = step(state, reserved(state))

    # When the charge goes through, and then the order is confirmed
    state, out = step(state, charged(state))
    done, after = step(
        state,
        OrderConfirmed(order_id=state.order_id, customer_id=state.customer_id, total=state.total),
    )

    # Then stock is committed and the order confirmed; the saga completes with no deadline
    assert kinds(out) == [CommitStock, ConfirmOrder]
    assert (state.status, done.status, after) == ("confirming", "completed", [])
    assert done.deadline is None
    assert done.finished


def test_shortage_cancels_the_order_with_the_skus_short():
    # Given a saga reserving stock
    _, state = started()

    # When the reservation fails
    state, out = step(state, StockReservationFailed(order_id=state.order_id, short=("A",)))

    # Then the order is cancelled, naming the SKU; nothing needs compensating
    assert kinds(out) == [CancelOrder]
    assert state.reason == "out of stock: A"
    assert state.compensations == ()


def test_declined_payment_releases_stock_then_cancels():
    # Given a saga charging
    _, state = started()
    state, _ = step(state, reserved(state))

    # When the payment is declined, the stock released, the order cancelled
    state, first = step(
        state, PaymentDeclined(order_id=state.order_id, amount=state.total, reason="card declined")
    )
    state, second = step(state, StockReleased(order_id=state.order_id, lines=LINES, reason="x"))
    state, third = step(
        state,
        OrderCancelled(
            order_id=state.order_id, customer_id=state.customer_id, reason="x", total=state.total
        ),
    )

    # Then release comes before cancel, and the saga ends cancelled with the reason
    assert (kinds(first), kinds(second), third) == ([ReleaseStock], [CancelOrder], [])
    assert state.status == "cancelled"
    assert state.reason == "payment declined: card declined"
    assert state.compensations == ("release_stock",)


def test_payment_deadline_compensates_and_a_late_charge_is_refunded():
    # Given a saga whose payment never answered in time
    _, state = started()
    state, _ = step(state, reserved(state))
    state, out = step(state, deadline(state, "charging"))
    assert kinds(out) == [ReleaseStock]

    # When the charge lands after the saga gave up
    state, _ = run(state, StockReleased(order_id=state.order_id, lines=LINES, reason="x"))
    state, _ = run(
        state,
        OrderCancelled(
            order_id=state.order_id, customer_id=state.customer_id, reason="x", total=state.total
        ),
    )
    state, late = step(state, charged(state))

    # Then it is refunded, once, and the saga stays cancelled
    assert kinds(late) == [RefundPayment]
    assert state.status == "cancelled"
    assert state.reason == "payment timed out"
    assert state.compensations == ("release_stock", "refund_payment")
    assert step(state, charged(state)) == (state, [])


def test_stale_deadline_changes_nothing():
    # Given a saga that left the reserving step
    _, state = started()
    state, _ = step(state, reserved(state))

    # When the reserving step's deadline arrives, Then nothing happens
    assert step(state, deadline(state, "reserving")) == (state, [])


def test_duplicates_and_late_replies_change_nothing():
    # Given a saga at every stage
    _, reserving = started()
    charging, _ = step(reserving, reserved(reserving))
    confirming, _ = step(charging, charged(charging))
    completed, _ = step(
        confirming,
        OrderConfirmed(
            order_id=confirming.order_id, customer_id=confirming.customer_id, total=confirming.total
        ),
    )

    # When replies come again, or too late, Then the state is the same and nothing is sent
    assert step(charging, reserved(charging)) == (charging, [])
    assert step(confirming, charged(confirming)) == (confirming, [])
    assert step(
        confirming, PaymentDeclined(order_id=confirming.order_id, amount=Decimal(1), reason="x")
    ) == (confirming, [])
    assert step(completed, reserved(completed)) == (completed, [])
    assert step(completed, charged(completed)) == (completed, [])


def test_saga_messages_have_deterministic_ids():
    # Given the same order started twice (a redelivery after a crash)
    event = placed()

    # When the saga starts each time
    _, first = start(event, step_seconds=5)
    _, again = start(event, step_seconds=5)

    # Then it sends the same message ids, which handlers deduplicate
    assert [m.message_id for m in first] == [m.message_id for m in again]


def test_external_cancel_while_reserving_releases_without_cancelling_again():
    # Given a saga reserving stock
    _, state = started()

    # When the order is cancelled from outside, and the stock released
    state, out = step(
        state,
        OrderCancelled(
            order_id=state.order_id,
            customer_id=state.customer_id,
            reason="customer",
            total=state.total,
        ),
    )
    state, after = step(
        state, StockReleased(order_id=state.order_id, lines=LINES, reason="customer")
    )

    # Then the stock is released and the saga ends without a second cancel
    assert (kinds(out), after, state.status) == ([ReleaseStock], [], "cancelled")
