"""The fulfilment saga's state: where it stands, what it must compensate, when its step ends."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from messages import Message
from messages.inventory import StockLine


class SagaStatus(StrEnum):
    """The states of an order's fulfilment; the last three are terminal."""

    RESERVING = "reserving"
    CHARGING = "charging"
    CONFIRMING = "confirming"
    RELEASING = "releasing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    #: Ended in a way the saga cannot repair alone (e.g. the order confirmed upstream while
    #: the saga was cancelling it): an operator looks at it.
    FLAGGED = "flagged"


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.CANCELLED, SagaStatus.FLAGGED})


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
    status: SagaStatus = SagaStatus.RESERVING
    reason: str | None = None
    #: When the saga entered ``status``; its ``deadline`` is counted from then.
    entered_at: datetime | None = None
    deadline: datetime | None = None
    #: A ``PaymentCharged`` for this order was seen (expected or not).
    charged: bool = False
    #: A ``RefundPayment`` was sent for that charge.
    refunded: bool = False
    order_cancelled: bool = False
    compensations: tuple[str, ...] = ()
    #: What an operator should know: effects the saga could not place.
    flags: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def but(self, **changes: object) -> Fulfilment:
        return self.model_copy(update=changes)


Step = tuple[Fulfilment, list[Message]]


def enter(state: Fulfilment, status: SagaStatus, now: datetime, out: list[Message]) -> Step:
    """Move to ``status`` at ``now``; a running state's deadline is counted from now."""
    deadline = None if status in TERMINAL else now + timedelta(seconds=state.step_seconds)
    return state.but(status=status, entered_at=now, deadline=deadline), out
