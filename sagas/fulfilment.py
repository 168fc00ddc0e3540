"""The order-fulfilment saga as pure steps: ``(state, message) -> (state, messages to send)``.

``OrderPlaced → ReserveStock → StockReserved → ChargePayment → PaymentCharged →
CommitStock + ConfirmOrder → OrderConfirmed``. A shortage cancels the order; a declined
payment releases the stock, then cancels; a step past its deadline is compensated in
reverse (release the stock, then cancel). A charge that lands after the saga gave up is
refunded. Every message the saga sends has an id derived from the order id and its name, so
sending it again (after a crash) is deduplicated by its handler: exactly once in effect.
A message a state does not expect (a duplicate, a late reply, a stale deadline) changes
nothing: the step returns the very same state.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from messages import Message
from messages.errors import InvalidMessageError
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

Status = Literal[
    "reserving", "charging", "releasing", "cancelling", "confirming", "completed", "cancelled"
]
TERMINAL = frozenset({"completed", "cancelled"})
#: The steps that have a deadline.
TIMED = frozenset({"reserving", "charging"})
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


class Fulfilment(BaseModel):
    """One order's fulfilment: what it needs to compensate, and where it stands."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: UUID
    customer_id: UUID
    correlation_id: UUID
    lines: tuple[StockLine, ...]
    total: Decimal
    payment_method: str
    step_seconds: float
    status: Status = "reserving"
    reason: str | None = None
    deadline: datetime | None = None
    charged: bool = False
    order_cancelled: bool = False
    compensations: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


Step = tuple[Fulfilment, list[Message]]


def start(event: OrderPlaced, step_seconds: float) -> Step:
    """A placed order starts its saga: reserve the stock, within the deadline."""
    state = Fulfilment(
        order_id=event.order_id,
        customer_id=event.customer_id,
        correlation_id=event.correlation,
        lines=tuple(StockLine(sku=ln.sku, quantity=ln.quantity) for ln in event.lines),
        total=event.total,
        payment_method=event.payment_method,
        step_seconds=step_seconds,
    )
    return _enter(state, "reserving", event, [_send(state, ReserveStock, event, lines=state.lines)])


def step(state: Fulfilment, message: Message) -> Step:  # noqa: PLR0911 -- a return per transition: the match is the state table
    """The saga's reaction to ``message``; the same state (and nothing to send) if none."""
    match state.status, message:
        case "reserving", StockReserved():
            return _charge(state, message)
        case "reserving", StockReservationFailed():
            return _cancel(state, message, "out of stock: " + ", ".join(message.short))
        case (("reserving" | "charging"), StepDeadlinePassed()) if message.step == state.status:
            return _release(state, message, f"{_STEP_NAMES[state.status]} timed out")
        case "charging", PaymentCharged():
            return _confirm(state, message)
        case "charging", PaymentDeclined():
            return _release(state, message, f"payment declined: {message.reason}")
        case (("reserving" | "charging"), OrderCancelled()):
            cancelled = state.model_copy(update={"order_cancelled": True})
            return _release(cancelled, message, message.reason)
        case "releasing", OrderCancelled() if not state.order_cancelled:
            return state.model_copy(update={"order_cancelled": True}), []
        case "releasing", (StockReleased() | StockReservationFailed()):
            return _after_release(state, message)
        case "cancelling", OrderCancelled():
            return _enter(state, "cancelled", message, [])
        case "confirming", OrderConfirmed():
            return _enter(state, "completed", message, [])
        case (("releasing" | "cancelling" | "cancelled"), PaymentCharged()) if not state.charged:
            return _refund(state, message)
    return state, []


_STEP_NAMES = {"reserving": "stock reservation", "charging": "payment"}


def _charge(state: Fulfilment, cause: Message) -> Step:
    charge = _send(
        state,
        ChargePayment,
        cause,
        customer_id=state.customer_id,
        amount=state.total,
        payment_method=state.payment_method,
    )
    return _enter(state, "charging", cause, [charge])


def _confirm(state: Fulfilment, cause: Message) -> Step:
    charged = state.model_copy(update={"charged": True})
    commands = [_send(state, CommitStock, cause), _send(state, ConfirmOrder, cause)]
    return _enter(charged, "confirming", cause, commands)


def _release(state: Fulfilment, cause: Message, reason: str) -> Step:
    """Compensate in reverse: give the stock back first; the order is cancelled after."""
    released = state.model_copy(
        update={"reason": reason, "compensations": (*state.compensations, "release_stock")}
    )
    release = _send(state, ReleaseStock, cause, lines=state.lines, reason=reason)
    return _enter(released, "releasing", cause, [release])


def _after_release(state: Fulfilment, cause: Message) -> Step:
    if state.order_cancelled:
        return _enter(state, "cancelled", cause, [])
    return _cancel(state, cause, state.reason or "cancelled")


def _cancel(state: Fulfilment, cause: Message, reason: str) -> Step:
    cancelling = state.model_copy(update={"reason": reason})
    return _enter(
        cancelling, "cancelling", cause, [_send(state, CancelOrder, cause, reason=reason)]
    )


def _refund(state: Fulfilment, cause: Message) -> Step:
    """A charge after the saga gave up on the order is given back."""
    refunded = state.model_copy(
        update={"charged": True, "compensations": (*state.compensations, "refund_payment")}
    )
    refund = _send(state, RefundPayment, cause, reason=f"order cancelled: {state.reason}")
    return refunded, [refund]


def _enter(state: Fulfilment, status: Status, cause: Message, out: list[Message]) -> Step:
    """Move to ``status``; a timed step also sends itself its deadline, delayed."""
    deadline = None
    if status in TIMED:
        deadline = cause.occurred_at + timedelta(seconds=state.step_seconds)
        out = [*out, _send(state, StepDeadlinePassed, cause, step=status, due_at=deadline)]
    return state.model_copy(update={"status": status, "deadline": deadline}), out


def _send(state: Fulfilment, kind: type[Message], cause: Message, **data: Any) -> Message:
    """A message of this saga, under an id only this saga and this kind of message produce."""
    name = kind.type_name() + (f":{data['step']}" if "step" in data else "")
    fields: dict[str, Any] = {
        "message_id": message_id(state.order_id, name),
        "correlation_id": state.correlation_id,
        "causation_id": cause.message_id,
        "order_id": state.order_id,
        **data,
    }
    return kind(**fields)


def message_id(order_id: UUID, name: str) -> UUID:
    return uuid.uuid5(order_id, f"fulfilment:{name}")


def saga_key(message: Message) -> UUID:
    """The saga a message belongs to: every message here carries its order id."""
    order_id = getattr(message, "order_id", None)
    if not isinstance(order_id, UUID):
        raise InvalidMessageError(f"{message.type_name()} carries no order id")
    return order_id
