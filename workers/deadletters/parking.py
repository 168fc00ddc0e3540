"""Parking: an event a projection failed for good holds back the rest of its stream there.

Projection actors register here as they are declared, so the dead-letter path can find the
projection behind an actor without importing the actors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

from workers.deadletters.record import Failure

log = structlog.get_logger("sagaworks.deadletters")


class Parks(Protocol):
    """A projection as parking sees it."""

    def park(self, stream_id: str, version: int, dead_letter: str) -> None: ...


#: The projection behind each projection actor, by actor name.
PARKERS: dict[str, Callable[[], Parks]] = {}


def register(actor_name: str, projection: Callable[[], Parks]) -> None:
    """Declare that a failure of ``actor_name`` parks its stream in ``projection``."""
    PARKERS[actor_name] = projection


def park(failure: Failure) -> None:
    """A projection's event failed for good: park its stream for that projection."""
    message = failure.message or {}
    stream_id, version = message.get("stream_id"), message.get("stream_version")
    projection = PARKERS.get(failure.actor or "")
    if projection is None or not isinstance(stream_id, str) or not isinstance(version, int):
        return
    projection().park(stream_id, version, failure.key)
    log.warning("projection.parked", actor=failure.actor, stream_id=stream_id)
