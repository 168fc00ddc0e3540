"""Fulfilment saga contracts: the deadline a saga sets itself for the step it is in."""

from __future__ import annotations

from messages.base import Message
from messages.registry import registry
from messages.types import Id, Timestamp


@registry.register
class StepDeadlinePassed(Message):
    """Sent to the saga with a delay; a no-op if the saga has left ``step`` by then."""

    order_id: Id
    step: str
    #: When the step's time is up (the message is sent delayed until then).
    due_at: Timestamp
