"""Parking: what failed for good is set aside, visibly, so that what follows it can go on.

An event a projection failed for good holds back the rest of its stream there. Projection
actors register here as they are declared, so the dead-letter path can find the projection
behind an actor without importing the actors. A commit the relay cannot decode is parked on
the commit and recorded as a dead letter of the ``outbox``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Protocol

import structlog

from readstore.db import Document
from workers.deadletters.record import MAX_STORED_CHARS, Failure, now
from workers.deadletters.store import DeadLetterStore

#: The dead-letter queue name of commits the relay parked.
OUTBOX = "outbox"

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


def record_parked_commit(doc: Document, reason: str) -> None:
    """A commit the relay parked, as a dead letter of the ``outbox`` (not replayable)."""
    commit_id = str(doc.get("_id"))[:200]
    text = json.dumps(doc, default=str)
    at = now()
    failure = Failure(
        key="commit-" + hashlib.sha256(commit_id.encode()).hexdigest()[:32],
        queue=OUTBOX,
        error_type="UndecodableCommit",
        reason=reason,
        attempts=1,
        failed_at=at,
        first_failed_at=at,
        source="relay",
        raw_body=text[:MAX_STORED_CHARS],
        truncated=len(text) > MAX_STORED_CHARS,
    )
    DeadLetterStore().record(failure, copy_in_xq=False)
