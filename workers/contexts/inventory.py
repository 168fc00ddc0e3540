"""The inventory context: stock per SKU, and each order's all-or-nothing reservation.

``AddStock`` goes through the ordinary command pipeline on the SKU's stream (``Sku`` in
``workers.contexts.stock``); ``ReserveStock``, ``ReleaseStock`` and ``CommitStock`` span
several streams and run through ``Inventory`` (``workers.contexts.reservations``, whose
docstring tells how a reservation stays all-or-nothing without transactions).
"""

from __future__ import annotations

import structlog

from messages import Message
from messages.errors import InvalidMessageError
from messages.inventory import AddStock, CommitStock, ReleaseStock, ReserveStock
from workers.contexts.reservations import Inventory
from workers.contexts.stock import Reservation, Sku, hold_id, release_id
from workers.runtime.broker import message_actor
from workers.runtime.routing import command_endpoint
from workers.runtime.settings import Settings
from workers.write.commands import CommandResult, Session, handle, handles
from workers.write.eventstore import EventStore

log = structlog.get_logger("sagaworks.inventory")

ENDPOINT = command_endpoint("inventory")
__all__ = ["Inventory", "Reservation", "Sku", "hold_id", "release_id"]


@handles(AddStock, Sku)
def add_stock(sku: Sku, command: AddStock, _: Session) -> None:
    sku.add(command)


_attempts = 5


def configure(settings: Settings) -> None:
    """At boot: how often a command re-reads and re-decides after a conflict."""
    global _attempts  # noqa: PLW0603 -- process-wide, set once at boot
    _attempts = settings.concurrency_attempts


def run_inventory_command(message: Message) -> str:
    """Run one inventory command; ``AddStock`` goes through the ordinary command pipeline."""
    attempts = _attempts
    inventory = Inventory(EventStore(), attempts)
    match message:
        case AddStock():
            return str(handle(message, "inventory", attempts).token)
        case ReserveStock():
            outcome = inventory.reserve(message)
        case ReleaseStock():
            outcome = inventory.release(message)
        case CommitStock():
            outcome = inventory.commit(message)
        case _:
            raise InvalidMessageError(f"{message.type_name()} is not an inventory command")
    log.info("reservation.handled", command=message.type_name(), outcome=outcome)
    return outcome


@message_actor(queue_name=ENDPOINT.queue_name, actor_name=ENDPOINT.actor_name)
def handle_inventory_command(message: Message) -> CommandResult | str:
    """Inventory commands: ``AddStock``, ``ReserveStock``, ``ReleaseStock``, ``CommitStock``."""
    if isinstance(message, AddStock):
        return handle(message, "inventory", _attempts)  # its token answers the reply_to
    return run_inventory_command(message)
