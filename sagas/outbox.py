"""What the fulfilment saga sends: each message under an id only this order and name produce."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from messages import Message
from messages.errors import InvalidMessageError
from messages.fulfilment import StepDeadlinePassed
from messages.inventory import CommitStock, ReleaseStock, ReserveStock
from messages.orders import CancelOrder, ConfirmOrder
from messages.payments import ChargePayment, RefundPayment
from sagas.state import Fulfilment


def reserve(state: Fulfilment, cause: Message) -> Message:
    return _send(state, ReserveStock, cause, lines=state.lines)


def charge(state: Fulfilment, cause: Message) -> Message:
    return _send(
        state,
        ChargePayment,
        cause,
        customer_id=state.customer_id,
        amount=state.total,
        payment_method=state.payment_method,
    )


def confirm(state: Fulfilment, cause: Message) -> Message:
    return _send(state, ConfirmOrder, cause)


def commit(state: Fulfilment, cause: Message) -> Message:
    return _send(state, CommitStock, cause)


def release(state: Fulfilment, cause: Message) -> Message:
    return _send(state, ReleaseStock, cause, lines=state.lines, reason=state.reason or "cancelled")


def refund(state: Fulfilment, cause: Message) -> Message:
    reason = f"order cancelled: {state.reason}" if state.reason else "order cancelled"
    return _send(state, RefundPayment, cause, reason=reason[:200])


def cancel(state: Fulfilment, cause: Message) -> Message:
    return _send(state, CancelOrder, cause, reason=(state.reason or "cancelled")[:200])


def _send(state: Fulfilment, kind: type[Message], cause: Message, **data: Any) -> Message:
    fields: dict[str, Any] = {
        "message_id": message_id(state.order_id, kind.type_name()),
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


def deadline_passed(state: Fulfilment) -> StepDeadlinePassed:
    """The message that tells the saga its current step's deadline passed (the sweeper's)."""
    if state.deadline is None:
        raise InvalidMessageError(f"saga {state.order_id} is {state.status}: it has no deadline")
    name = f"StepDeadlinePassed:{state.status}:{state.deadline.isoformat()}"
    return StepDeadlinePassed(
        message_id=message_id(state.order_id, name),
        correlation_id=state.correlation_id,
        order_id=state.order_id,
        step=state.status,
        due_at=state.deadline,
    )
