"""The fulfilment saga's steps as pure functions: transitions, duplicates and late replies."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

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
from sagas import fulfilment
from sagas.fulfilment import Fulfilment, SagaStatus
from sagas.outbox import deadline_passed
from tests.support import ADDRESS, place_order

LINES = (StockLine(sku="A", quantity=2),)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def start(event: OrderPlaced, step_seconds: float = 5, now: datetime = NOW):
    return fulfilment.start(event, step_seconds, now)


def step(state: Fulfilment, message: Message, now: datetime = NOW):
    return fulfilment.step(state, message, now)


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
    assert state.deadline is not None
    return StepDeadlinePassed(order_id=state.order_id, step=name, due_at=state.deadline)


def cancelled(state: Fulfilment, reason: str = "customer") -> OrderCancelled:
    return OrderCancelled(
        order_id=state.order_id, customer_id=state.customer_id, reason=reason, total=state.total
    )


def confirmed(state: Fulfilment) -> OrderConfirmed:
    return OrderConfirmed(order_id=state.order_id, customer_id=state.customer_id, total=state.total)


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

    # Then it reserves the lines, with the step's deadline counted from now
    assert state.status == "reserving"
    assert kinds(out) == [ReserveStock]
    assert state.deadline == NOW + timedelta(seconds=5)
    assert all(m.correlation_id == event.correlation_id for m in out)
    assert all(m.causation_id == event.message_id for m in out)


def test_reserved_stock_is_charged():
    # Given a saga reserving stock
    _, state = started()

    # When the stock is reserved
    state, out = step(state, reserved(state))

    # Then the order's total is charged, with a new deadline
    assert state.status == "charging"
    assert kinds(out) == [ChargePayment]
    assert out[0].amount == Decimal("10.00")  # type: ignore[attr-defined]


def test_charged_payment_commits_stock_and_confirms():
    # Given a saga charging
    _, state = started()
    state, _ = step(state, reserved(state))

    # When the charge goes through, and then the order is confirmed
    state, out = step(state, charged(state))
    done, after = step(state, confirmed(state))

    # Then the order is confirmed, and only then the stock committed; no deadline is left
    assert kinds(out) == [ConfirmOrder]
    assert kinds(after) == [CommitStock]
    assert (state.status, done.status) == ("confirming", "completed")
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
    state, third = step(state, cancelled(state, "x"))

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
    state, _ = run(state, cancelled(state, "x"))
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
    completed, _ = step(confirming, confirmed(confirming))

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
    state, out = step(state, cancelled(state))
    state, after = step(
        state, StockReleased(order_id=state.order_id, lines=LINES, reason="customer")
    )

    # Then the stock is released and the saga ends without a second cancel
    assert (kinds(out), after, state.status) == ([ReleaseStock], [], "cancelled")


def test_cancel_that_wins_against_the_confirmation_refunds_and_returns_the_stock():
    # Given a saga confirming: the payment charged, ConfirmOrder on its way
    _, state = started()
    state, _ = step(state, reserved(state))
    state, _ = step(state, charged(state))
    assert state.status == "confirming"

    # When an upstream CancelOrder reached the order first
    state, out = step(state, cancelled(state, "customer changed their mind"))
    state, after = step(state, StockReleased(order_id=state.order_id, lines=LINES, reason="x"))

    # Then the stock goes back and the charge is refunded; the saga ends cancelled
    assert kinds(out) == [ReleaseStock, RefundPayment]
    assert (after, state.status) == ([], "cancelled")
    assert state.compensations == ("release_stock", "refund_payment")


def test_order_confirmed_behind_a_cancelling_saga_is_flagged_not_ignored():
    # Given a saga cancelling an order that was short of stock
    _, state = started()
    state, _ = step(state, StockReservationFailed(order_id=state.order_id, short=("A",)))

    # When the order is confirmed upstream instead
    state, out = step(state, confirmed(state))

    # Then the saga ends flagged for an operator, saying why
    assert (state.status, out) == ("flagged", [])
    assert state.flags == ("OrderConfirmed while cancelling",)


def test_deadline_is_counted_from_entering_the_step_not_from_the_event():
    # Given an order placed an hour before the saga reads it (a backlog)
    event = placed().model_copy(update={"occurred_at": NOW - timedelta(hours=1)})

    # When the saga starts now, and the stock is reserved a minute later
    state, _ = start(event, step_seconds=30, now=NOW)
    later = NOW + timedelta(minutes=1)
    charging, _ = step(state, reserved(state), now=later)

    # Then each deadline is 30 s after the saga entered its step
    assert state.deadline == NOW + timedelta(seconds=30)
    assert charging.deadline == later + timedelta(seconds=30)
    assert charging.entered_at == later


@pytest.mark.parametrize("status", [s for s in SagaStatus if s not in fulfilment.TERMINAL])
def test_every_running_state_has_a_deadline_and_a_way_out(status):
    # Given a saga (charged, so every compensation applies) in each running state
    _, state = started()
    state = state.but(status=status, charged=status in ("confirming", "releasing"))

    # When its deadline passes
    after, out = step(state, deadline_passed(state), now=NOW + timedelta(minutes=1))

    # Then it compensates (the first two steps) or sends its step's commands again,
    # with a fresh deadline
    expected = {
        "reserving": [ReleaseStock],
        "charging": [ReleaseStock],
        "confirming": [ConfirmOrder],
        "releasing": [ReleaseStock, RefundPayment],
        "cancelling": [CancelOrder],
    }[status]
    assert kinds(out) == expected
    assert after.deadline == NOW + timedelta(minutes=1, seconds=5)


def test_the_step_table_decides_every_state_and_message():
    # Given every state and every message the saga handles, Then each pair has a handler
    pairs = {(s, k) for s in SagaStatus for k in fulfilment.HANDLES}
    assert set(fulfilment.TABLE) == pairs


@pytest.mark.parametrize("status", list(SagaStatus))
def test_unexpected_charge_in_every_state_ends_refunded_used_or_flagged(status):
    # Given a saga in each state that has not seen a charge
    _, state = started()
    state = state.but(status=status, charged=False)

    # When a PaymentCharged arrives, and then the saga's own way out of that state
    state, sent = run(state, charged(state))
    follow = {
        "reserving": [StockReservationFailed(order_id=state.order_id, short=("A",))],
        "releasing": [StockReleased(order_id=state.order_id, lines=LINES, reason="x")],
    }.get(status, [])
    state, more = run(state, *follow)

    # Then the charge is refunded, used for the order it was taken for, or flagged
    sent = kinds(sent + more)
    if status == "charging":
        assert sent == [ConfirmOrder] and state.charged  # the charge the saga asked for
    elif status in ("confirming", "completed", "flagged"):
        assert state.status == "flagged" and state.flags
    else:
        assert RefundPayment in sent and state.refunded


def test_charge_seen_before_the_reservation_is_used_not_taken_twice():
    # Given a charge that arrived while the saga was still reserving (its save was lost)
    _, state = started()
    state, _ = step(state, charged(state))

    # When the stock is reserved
    state, out = step(state, reserved(state))

    # Then the order is confirmed on that charge; no second ChargePayment
    assert (state.status, kinds(out)) == ("confirming", [ConfirmOrder])
