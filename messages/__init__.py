"""Message contracts: the base classes, the registry and the domain's commands and events."""

from messages.base import Command, Event, Message, caused_by
from messages.registry import (
    InvalidMessage,
    UnknownMessageType,
    decode,
    encode,
    registry,
    upcaster,
)

__all__ = [
    "Command",
    "Event",
    "InvalidMessage",
    "Message",
    "UnknownMessageType",
    "caused_by",
    "decode",
    "encode",
    "registry",
    "upcaster",
]

# The domain's contracts register themselves on import.
from messages import customers, fulfilment, inventory, orders, payments

__all__ += ["customers", "fulfilment", "inventory", "orders", "payments"]
