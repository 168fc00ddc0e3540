"""A replay's claims: entries it owns under a token and a lease, then replayed or dead again.

Claiming moves entries ``dead`` → ``replaying`` under the replay's token and a lease; a
committed batch moves them ``replaying`` → ``replayed``; a batch that never reached the broker
moves them back to ``dead``. Every move is conditional on the owner's token and counted in
the summary by exactly the entries it changed (``transitions``).
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from readstore.db import Document
from workers.deadletters.publisher import Batch, Publisher
from workers.deadletters.record import now
from workers.deadletters.store import DEAD, HISTORY_KEPT, REPLAYED, REPLAYING, DeadLetterStore
from workers.deadletters.transitions import PLACE, chunks, move

log = structlog.get_logger("sagaworks.replay")
#: What a replay reads of an entry.
REPLAY_FIELDS = {
    "envelope": 1,
    "state": 1,
    "replayable": 1,
    "queue": 1,
    "group": 1,
    "replays": 1,
    "replay": 1,
    "last_failed_at": 1,
}


def taking(token: str, by: str, lease: float) -> Document:
    """The update that makes an entry this replay's until its lease runs out."""
    until = now() + timedelta(seconds=lease)
    return {"$set": {"state": str(REPLAYING), "replay": {"token": token, "until": until, "by": by}}}


def claim_ids(
    store: DeadLetterStore, seen: dict[str, Document], token: str, by: str, lease: float
) -> list[Document]:
    """Take the entries of ``seen`` that are still dead; the documents taken."""
    dead = {i: doc for i, doc in seen.items() if doc.get("state") == DEAD}
    taken = move(store, dead, REPLAYING, taking(token, by, lease))
    found: list[Document] = []
    for chunk in chunks(taken):
        found += store.entries.find({"_id": {"$in": chunk}, "replay.token": token}, REPLAY_FIELDS)
    return found


def finish(
    store: DeadLetterStore, batches: list[Batch], by: str, known: dict[str, Document]
) -> int:
    """The batches reached the broker: their entries are replayed (``known``: as claimed)."""
    event = {"event": "replayed", "at": now(), "by": by}
    update: Document = {
        "$set": {"state": str(REPLAYED)},
        "$unset": {"replay": ""},
        "$inc": {"replays": 1},
        "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
    }
    return len(move(store, _owned(batches, known), REPLAYED, update))


def release(
    store: DeadLetterStore, batch: Batch, by: str, reason: str, known: dict[str, Document]
) -> int:
    """A batch that never reached the broker: its entries are dead again."""
    event = {"event": "replay_failed", "at": now(), "by": by, "reason": reason}
    return len(move(store, _owned([batch], known), DEAD, _dead_again(event)))


def _owned(batches: list[Batch], known: dict[str, Document]) -> dict[str, Document]:
    """Each entry of ``batches`` as its batch owns it (where known: its queue and group)."""
    return {
        i: {**known.get(i, {}), "state": str(REPLAYING), "replay": {"token": b.token}}
        for b in batches
        for i in b.ids
    }


def settle(
    store: DeadLetterStore, send: Publisher, finished: frozenset[str] = frozenset()
) -> dict[str, int]:
    """Finish what an interrupted replay left ``replaying``: sent → replayed, else dead.
    ``finished``: tokens of batches this process already marked replayed (skipped)."""
    batches, ack = send.journal()
    batches = [b for b in batches if b.token not in finished]
    sent = finish(store, batches, "replay journal", {}) if batches else 0
    ack()
    lapsed = {d["_id"]: d for d in _replaying(store) if d["replay"]["until"] < now()}
    event = {"event": "replay_failed", "at": now(), "by": "replay journal"}
    event["reason"] = "interrupted before it was sent"
    back = len(move(store, lapsed, DEAD, _dead_again(event)))
    if sent or back:
        log.warning("replay.settled", replayed=sent, dead_again=back)
    return {"replayed": sent, "dead_again": back}


def _replaying(store: DeadLetterStore) -> list[Document]:
    """Every entry a replay owns (read by the state index alone: a filter on the lease too
    would make SecantusDB read the whole collection)."""
    return list(store.entries.find({"state": str(REPLAYING)}, {**PLACE, "replay.until": 1}))


def _dead_again(event: Document) -> Document:
    return {
        "$set": {"state": str(DEAD)},
        "$unset": {"replay": ""},
        "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
    }
