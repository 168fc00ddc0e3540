"""Fulfilment saga contracts: the deadline a saga sets itself for the step it is in."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from messages.base import Message
from messages.registry import registry


@registry.register
class StepDeadlinePassed(Message):
    """Sent to the saga with a delay; a no-op if the saga has left ``step`` by then."""

    order_id: UUID
    step: str
    #: When the step's time is up (the message is sent delayed until then).
    due_at: datetime
