"""The order-fulfilment saga as pure steps: ``(state, message, now) -> (state, messages to send)``.

``OrderPlaced → ReserveStock → StockReserved → ChargePayment → PaymentCharged → ConfirmOrder →
OrderConfirmed → CommitStock``. A shortage cancels the order; a declined payment, a step past
its deadline or an upstream ``OrderCancelled`` releases the stock (and refunds a charge), then
cancels. Stock is committed only once the order is confirmed, so a cancellation that wins the
race against ``ConfirmOrder`` has nothing committed to give back. Every running state has a
deadline counted from when the saga entered it: the first two steps compensate when it passes,
the later ones send their commands again. A charge the saga cannot use is refunded; one it
cannot refund (the order is confirmed) is flagged. Nothing is dropped.

The step table is total: each (state, message type) pair has an explicit handler, checked at
import, so a new state or message cannot be added without deciding what it does everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from messages import Message
from messages.errors import InvalidMessageError
from messages.fulfilment import StepDeadlinePassed
from messages.inventory import StockLine, StockReleased, StockReservationFailed, StockReserved
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from messages.payments import PaymentCharged, PaymentDeclined
from sagas import outbox as send
from sagas.outbox import message_id, saga_key
from sagas.state import TERMINAL, Fulfilment, SagaStatus, Step, enter

S = SagaStatus
RUNNING = tuple(s for s in SagaStatus if s not in TERMINAL)
#: The messages the saga is subscribed to.
HANDLES: tuple[type[Message], ...] = (
    OrderPlaced,
    StockReserved,
    StockReservationFailed,
    StockReleased,
    PaymentCharged,
    PaymentDeclined,
    OrderConfirmed,
    OrderCancelled,
    StepDeadlinePassed,
)
Handler = Callable[[Fulfilment, Any, datetime], Step]
TABLE: dict[tuple[SagaStatus, type[Message]], Handler] = {}


def start(event: OrderPlaced, step_seconds: float, now: datetime) -> Step:
    """A placed order starts its saga: reserve the stock, within the deadline."""
    state = Fulfilment(
        order_id=event.order_id,
        customer_id=event.customer_id,
        correlation_id=event.correlation,
        lines=tuple(StockLine(sku=line.sku, quantity=line.quantity) for line in event.lines),
        total=event.total,
        payment_method=event.payment_method,
        step_seconds=step_seconds,
    )
    return enter(state, S.RESERVING, now, [send.reserve(state, event)])


def step(state: Fulfilment, message: Message, now: datetime) -> Step:
    """The saga's reaction to ``message`` at ``now``; the same state and nothing if none."""
    handler = TABLE.get((state.status, type(message)))
    if handler is None:
        raise InvalidMessageError(f"the fulfilment saga does not handle {message.type_name()}")
    return handler(state, message, now)


def on(statuses: Iterable[SagaStatus], *kinds: type[Message]) -> Callable[[Handler], Handler]:
    """Register the decorated handler for every (status, kind) pair; each pair only once."""

    def register(fn: Handler) -> Handler:
        for status in statuses:
            for kind in kinds:
                if (status, kind) in TABLE:
                    raise RuntimeError(f"({status}, {kind.__name__}) has two handlers")
                TABLE[(status, kind)] = fn
        return fn

    return register


def check_table() -> None:
    """Refuse a step table with a (status, message) pair nobody decided on."""
    missing = [(s.value, k.__name__) for s in SagaStatus for k in HANDLES if (s, k) not in TABLE]
    if missing:
        raise RuntimeError(f"the fulfilment step table has no handler for {missing}")


# -- the forward path ------------------------------------------------------------------------
@on([S.RESERVING], StockReserved)
def _reserved(state: Fulfilment, event: StockReserved, now: datetime) -> Step:
    if state.charged:  # the charge was seen before the reservation (a lost save upstream)
        return enter(state, S.CONFIRMING, now, [send.confirm(state, event)])
    return enter(state, S.CHARGING, now, [send.charge(state, event)])


@on([S.CHARGING], PaymentCharged)
def _charged(state: Fulfilment, event: PaymentCharged, now: datetime) -> Step:
    charged = state.but(charged=True)
    return enter(charged, S.CONFIRMING, now, [send.confirm(charged, event)])


@on([S.CONFIRMING], OrderConfirmed)
def _confirmed(state: Fulfilment, event: OrderConfirmed, now: datetime) -> Step:
    return enter(state, S.COMPLETED, now, [send.commit(state, event)])


# -- giving up: release (and refund), then cancel ----------------------------------------------
@on([S.RESERVING], StockReservationFailed)
def _short(state: Fulfilment, event: StockReservationFailed, now: datetime) -> Step:
    return _cancel(state.but(reason="out of stock: " + ", ".join(event.short)), event, now)


@on([S.CHARGING], PaymentDeclined)
def _declined(state: Fulfilment, event: PaymentDeclined, now: datetime) -> Step:
    return release(state.but(reason=f"payment declined: {event.reason}"), event, now)


@on(RUNNING, StepDeadlinePassed)
def _deadline(state: Fulfilment, message: StepDeadlinePassed, now: datetime) -> Step:
    """Past its deadline, a step compensates (the first two) or sends its commands again."""
    if message.step != state.status or message.due_at != state.deadline:
        return state, []  # a deadline of a step the saga has left, or entered again since
    if state.status in (S.RESERVING, S.CHARGING):
        what = "stock reservation" if state.status == S.RESERVING else "payment"
        return release(state.but(reason=f"{what} timed out"), message, now)
    return enter(state, state.status, now, _resend(state, message))


def _resend(state: Fulfilment, cause: Message) -> list[Message]:
    if state.status == S.CONFIRMING:
        return [send.confirm(state, cause)]
    if state.status == S.RELEASING:
        return [send.release(state, cause)] + ([send.refund(state, cause)] if state.charged else [])
    return [send.cancel(state, cause)]


@on([S.RESERVING, S.CHARGING, S.CONFIRMING], OrderCancelled)
def _cancelled_upstream(state: Fulfilment, event: OrderCancelled, now: datetime) -> Step:
    return release(state.but(order_cancelled=True, reason=event.reason), event, now)


def release(state: Fulfilment, cause: Message, now: datetime) -> Step:
    """Compensate in reverse: the stock back and the charge refunded; the order after."""
    out = [send.release(state, cause)]
    compensations = (*state.compensations, "release_stock")
    if state.charged and not state.refunded:
        out.append(send.refund(state, cause))
        compensations = (*compensations, "refund_payment")
    released = state.but(compensations=compensations, refunded=state.charged)
    return enter(released, S.RELEASING, now, out)


@on([S.RELEASING], StockReleased, StockReservationFailed)
def _released(state: Fulfilment, event: Message, now: datetime) -> Step:
    if state.order_cancelled:
        return enter(state, S.CANCELLED, now, [])
    return _cancel(state, event, now)


def _cancel(state: Fulfilment, cause: Message, now: datetime) -> Step:
    out = [send.cancel(state, cause)]
    if state.charged and not state.refunded:
        out.append(send.refund(state, cause))
        state = state.but(refunded=True, compensations=(*state.compensations, "refund_payment"))
    return enter(state, S.CANCELLING, now, out)


@on([S.RELEASING], OrderCancelled)
def _cancelled_while_releasing(state: Fulfilment, event: OrderCancelled, now: datetime) -> Step:
    return state.but(order_cancelled=True), []


@on([S.CANCELLING], OrderCancelled)
def _cancelled(state: Fulfilment, event: OrderCancelled, now: datetime) -> Step:
    return enter(state.but(order_cancelled=True), S.CANCELLED, now, [])


# -- effects the state does not expect: used, refunded or flagged, never dropped --------------
@on([S.RESERVING], PaymentCharged)
def _charged_early(state: Fulfilment, event: PaymentCharged, now: datetime) -> Step:
    """Kept: once the stock is reserved the order is confirmed on it, else it is refunded."""
    return state.but(charged=True), []


@on([S.RELEASING, S.CANCELLING, S.CANCELLED], PaymentCharged)
def _charged_late(state: Fulfilment, event: PaymentCharged, now: datetime) -> Step:
    """A charge landing after the saga gave up on the order is given back."""
    if state.charged:
        return state, []  # the charge the saga knows of (and has refunded or will)
    charged = state.but(charged=True, refunded=True)
    refunded = charged.but(compensations=(*state.compensations, "refund_payment"))
    return refunded, [send.refund(refunded, event)]


@on([S.CONFIRMING, S.COMPLETED, S.FLAGGED], PaymentCharged)
def _charged_again(state: Fulfilment, event: PaymentCharged, now: datetime) -> Step:
    if state.charged:
        return state, []  # the one charge of this order, delivered again under a new id
    return _flag(state, event, now)


@on([S.RESERVING, S.CHARGING, S.RELEASING, S.CANCELLING, S.CANCELLED], OrderConfirmed)
@on([S.COMPLETED, S.FLAGGED], OrderCancelled)
def _flag(state: Fulfilment, message: Message, now: datetime) -> Step:
    """An order confirmed or cancelled behind the saga's back: an operator must look."""
    note = f"{message.type_name()} while {state.status}"
    flagged = state.but(flags=(*state.flags, note), reason=state.reason or note)
    if state.status == S.FLAGGED:
        return flagged, []
    return enter(flagged, S.FLAGGED, now, [])


# -- duplicates and late replies: nothing to do -------------------------------------------------
def _nothing(state: Fulfilment, message: Message, now: datetime) -> Step:
    return state, []


_LATE_REPLIES = (StockReserved, StockReservationFailed, StockReleased, PaymentDeclined)
on(SagaStatus, OrderPlaced)(_nothing)  # the saga exists: OrderPlaced delivered again
on([S.COMPLETED, S.FLAGGED], OrderConfirmed)(_nothing)
on([S.CANCELLED], OrderCancelled)(_nothing)  # the one cancellation, told again
on(TERMINAL, StepDeadlinePassed)(_nothing)
on([S.RESERVING], StockReleased, PaymentDeclined)(_nothing)
on([S.CHARGING], StockReserved, StockReservationFailed, StockReleased)(_nothing)
on([S.CONFIRMING], *_LATE_REPLIES)(_nothing)
on([S.RELEASING], StockReserved, PaymentDeclined)(_nothing)
on([S.CANCELLING, *TERMINAL], *_LATE_REPLIES)(_nothing)
check_table()

__all__ = [
    "HANDLES",
    "TABLE",
    "TERMINAL",
    "Fulfilment",
    "SagaStatus",
    "message_id",
    "saga_key",
    "start",
    "step",
]
