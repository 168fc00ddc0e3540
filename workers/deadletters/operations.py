"""What an operator does to dead letters, for the CLI and the console alike.

Reading one entry with its message as the current version, the group rows, archive and
purge, and edit-and-retry: the new payload is validated against its message type's schema
before anything is stored or sent, the edit (before and after) is kept in the entry's
history with who made it, then the entry is replayed like any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import dramatiq

from messages import InvalidMessage, decode, encode
from messages.registry import as_current
from readstore.db import Document
from workers.deadletters.record import now
from workers.deadletters.replay import ReplayReport, replay, why_not
from workers.deadletters.store import ARCHIVED, HISTORY_KEPT, DeadLetterStore

VERBS = ("replayed", "archived", "purged")


def detail(store: DeadLetterStore, entry_id: str) -> dict[str, Any] | None:
    """One entry with its id under ``id`` and its message read as the current version."""
    doc = store.get(entry_id)
    if doc is None:
        return None
    doc["id"] = doc.pop("_id")
    if doc.get("message"):
        doc["message"] = current(doc["message"])
    return doc


def current(message: dict[str, Any]) -> dict[str, Any]:
    """A message stored before its type evolved, read as the current version."""
    try:
        return as_current(message)
    except InvalidMessage:
        return message  # shown as stored when it no longer decodes


def group_rows(store: DeadLetterStore) -> list[dict[str, Any]]:
    """The groups of dead entries, largest first, each keyed ``group``."""
    return [
        {**{k: v for k, v in g.items() if k != "_id"}, "group": g["_id"]} for g in store.groups()
    ]


def retire(store: DeadLetterStore, ids: Sequence[str], verb: str, by: str) -> int:
    """Archive (kept, out of the dead letters) or purge (deleted) ``ids``; how many."""
    if verb == "purged":
        return store.purge(ids)
    if verb != ARCHIVED:
        raise ValueError(f"cannot retire by {verb!r}")
    return store.mark(ids, ARCHIVED, {"event": "archived", "at": now(), "by": by})


def payload(entry: Document) -> Any:
    """The message an entry's envelope carries as sent (decodable or not), or ``None``."""
    if not entry.get("envelope") or not entry.get("replayable"):
        return None
    args = json.loads(entry["envelope"]).get("args") or []
    return args[0] if len(args) == 1 else None


def editable(entry: Document) -> str | None:
    """The text an operator edits: the message as JSON (the current version if it decodes)."""
    found = entry.get("message") or payload(entry)
    if found is None:
        return None
    return found if isinstance(found, str) else json.dumps(found, indent=2, default=str)


def validated(entry: Document, text: str) -> dict[str, Any]:
    """The edited message ``text`` as wire JSON, validated by its type's model."""
    try:
        wire = json.loads(text)
    except ValueError as exc:
        raise InvalidMessage(f"the edited message is not JSON: {exc}") from None
    if not isinstance(wire, dict):
        raise InvalidMessage("the edited message must be a JSON object")
    message = decode(wire)  # raises InvalidMessage with the schema's complaint
    sent = payload(entry)
    expected = (entry.get("message") or (sent if isinstance(sent, dict) else {})).get("type")
    if expected and message.type_name() != expected:
        raise InvalidMessage(f"the edited message is a {message.type_name()}, not a {expected}")
    return encode(message)


def edit(store: DeadLetterStore, entry_id: str, text: str, by: str) -> dict[str, Any]:
    """Replace a dead entry's message with the validated ``text``; the edit goes in its history."""
    entry = store.get(entry_id)
    if entry is None:
        raise LookupError(f"no dead letter {entry_id}")
    reason = why_not(entry)
    if reason is not None:
        raise ValueError(f"cannot edit {entry_id}: {reason}")
    wire = validated(entry, text)
    envelope = json.loads(entry["envelope"])
    before = payload(entry)
    envelope["args"] = [wire]
    event = {"event": "edited", "at": now(), "by": by, "before": before, "after": wire}
    store.entries.update_one(
        {"_id": entry_id},
        {
            "$set": {"envelope": json.dumps(envelope, default=str), "message": wire},
            "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
        },
    )
    return wire


def edit_and_retry(
    store: DeadLetterStore,
    entry_id: str,
    text: str,
    by: str,
    broker: dramatiq.Broker | None = None,
) -> ReplayReport:
    """Edit a dead entry's message (validated first), then replay it."""
    edit(store, entry_id, text, by)
    return replay([entry_id], by, broker=broker, store=store)
