"""The exploration's model: its scenarios, its budget of perturbations, its clock, and the
labels that name a message the same in every world of one exploration."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

from messages import Event, Message
from messages.fulfilment import StepDeadlinePassed
from messages.orders import Address

ADDRESS = Address(name="Ada", street="1 Main St", city="Springfield", postal_code="1", country="US")
Delivery = tuple[str, Message]
Choice = tuple[str, int]
#: The saga's step deadline in the model (seconds); "time passes" moves the clock by ``TICK``.
STEP_SECONDS = 1.0
TICK = timedelta(seconds=10)


class SendFailed(Exception):
    """The broker refused a send (injected): the message being handled is redelivered."""


@dataclass(frozen=True)
class Scenario:
    name: str
    stock: int
    method: str


SCENARIOS = (
    Scenario("in stock, card", 5, "card"),
    Scenario("short of stock", 1, "card"),
    Scenario("card declined", 5, "declined-card"),
)


@dataclass(frozen=True)
class Budget:
    """How many of each perturbation one run may spend."""

    deadlines: int = 1
    cancels: int = 1
    duplicates: int = 1
    failures: int = 1
    #: A message overtaken between its read and its write by another one, run whole.
    races: int = 0

    def spend(self, kind: str) -> Budget:
        return replace(self, **{kind: getattr(self, kind) - 1})


#: Every message id met, by a label that is the same in every world of an exploration.
LABELS: dict[str, str] = {}
_BY_ID: dict[uuid.UUID, str] = {}


def label(message: Message) -> str:
    """``StockReserved@reservation-…:1`` for an event, the type (and step) for the rest."""
    known = _BY_ID.get(message.message_id)
    if known is not None:
        return known
    if isinstance(message, Event) and message.stream_id is not None:
        text = f"{message.type_name()}@{message.stream_id}:{message.stream_version}"
    elif isinstance(message, StepDeadlinePassed):
        text = f"{message.type_name()}:{message.step}:{message.due_at.isoformat()}"
    else:
        text = message.type_name()
    LABELS[str(message.message_id)] = _BY_ID[message.message_id] = text
    return text
