"""Projection actors: each projection consumes its own queue, with its own retries.

Events of a projection handled at once by a process's threads are applied together (see
``workers.subscribers.projections_batch``); an event replayed from the dead letters, which
may release its parked stream, is applied on its own.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog

from messages import Event, Message
from messages.errors import InvalidMessageError
from readstore.analytics import CustomerRegistrations, OrderAnalytics
from readstore.customers import CustomerProfiles
from readstore.inventory import InventoryLevels
from readstore.orders import OrderSummaries
from readstore.projection import Projection, is_releasing
from workers.deadletters import parking
from workers.runtime.broker import message_actor
from workers.subscribers.projections_batch import GroupCommit
from workers.write.outbox import subscribe

log = structlog.get_logger("sagaworks.projections")

#: Every projection by name, with the actor that feeds it.
PROJECTIONS: dict[str, tuple[type[Projection], dramatiq.Actor[Any, Any]]] = {}


def projection_actor(projection: type[Projection]) -> dramatiq.Actor[Any, Any]:
    """Declare ``project_<name>`` on queue ``projections.<name>`` and subscribe it."""

    group = GroupCommit(lambda events: projection().apply_batch(events))

    def apply(message: Message) -> None:
        if not isinstance(message, Event):
            raise InvalidMessageError(f"{message.type_name()} is not an event")
        applied = projection().apply(message) if is_releasing() else group.apply(message)
        log.info(
            "projection.applied",
            projection=projection.name,
            stream_id=message.stream_id,
            version=message.stream_version,
            applied=applied,
        )

    apply.__name__ = f"project_{projection.name}"
    actor: dramatiq.Actor[Any, Any] = message_actor(
        queue_name=f"projections.{projection.name}", actor_name=apply.__name__
    )(apply)
    subscribe(actor, projection.handles)
    PROJECTIONS[projection.name] = (projection, actor)
    parking.register(actor.actor_name, projection)
    return actor


project_order_summary = projection_actor(OrderSummaries)
project_customer_profile = projection_actor(CustomerProfiles)
project_inventory_levels = projection_actor(InventoryLevels)
project_order_analytics = projection_actor(OrderAnalytics)
project_customer_registrations = projection_actor(CustomerRegistrations)
