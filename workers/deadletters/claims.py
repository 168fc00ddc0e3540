"""A replay's claims: one write per entry (``dead`` → ``replayed``), undone if never sent.

Before it touches an entry, a batch stores its open-batch document (``dead_letter_replays``:
its token, lease, and where its entries are: one index range, or a list of ids). The claim
is then the entry's only change: still ``dead`` → ``replayed``, stamped with the batch's
token (``replay.token``), its history and replay count updated. A page of a queue or a group
is claimed by one ``update_many`` over its index range; given ids, by one conditional update
each. Only entries still dead move, so two replays never own one entry, and the summary
moves by exactly the entries stamped with this batch's token. Once the broker committed the
batch (and its marker in the journal queue) the open-batch document is deleted.

``settle`` finishes what a killed replay left open: a batch whose marker is in the journal
was sent (its document is dropped); a batch whose lease ran out without a marker never
reached the broker (its entries are ``dead`` again, their history saying so).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta

import structlog
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from readstore.db import Document
from workers.deadletters.publisher import LEASE_MARGIN, Publisher
from workers.deadletters.record import now
from workers.deadletters.selector import Selector
from workers.deadletters.store import DEAD, HISTORY_KEPT, REPLAYED, REPLAYING, DeadLetterStore
from workers.deadletters.transitions import PLACE, chunks, move, placed

log = structlog.get_logger("sagaworks.replay")
#: Open batches: claimed, not yet known to be sent.
OPEN_BATCHES = "dead_letter_replays"
#: What a replay reads of an entry it claimed.
REPLAY_FIELDS = {
    "envelope": 1,
    "state": 1,
    "replayable": 1,
    "queue": 1,
    "group": 1,
    "replays": 1,
    "replay.token": 1,
}
#: The lock one settling replay holds (collection and document), and for how long at most.
SETTLING = "dead_letter_settling"
SETTLING_LEASE = 60.0
#: Where an open batch's entries are: the fields of the selector of its index range.
RANGE = ("queue", "group", "since", "before")


@dataclass(frozen=True)
class Claim:
    """A batch this replay owns: its token, who, its lease (seconds, and the moment after
    which it must not be committed), and its entries as claimed."""

    token: str
    by: str
    lease: float
    entries: dict[str, Document] = field(default_factory=dict)
    deadline: float = 0.0


def new_claim(by: str, lease: float) -> Claim:
    deadline = time.monotonic() + lease * (1 - LEASE_MARGIN)
    return Claim(uuid.uuid4().hex, by, lease, deadline=deadline)


def claim_range(store: DeadLetterStore, where: Selector, claim: Claim) -> Claim:
    """Claim every dead entry of one index range (``where``: a selector whose filter one
    index holds) in one write; the claim with the entries it took (with their envelopes)."""
    _open(store, claim, {k: getattr(where, k) for k in RANGE})
    query, _ = replace(where, state=DEAD).split()
    store.entries.update_many(query, claiming(claim))
    taken = owned(store.read_range(replace(where, state=REPLAYED), REPLAY_FIELDS), claim.token)
    _count(store, claim.token, taken)
    return replace(claim, entries=taken)


def _count(store: DeadLetterStore, token: str, taken: dict[str, Document]) -> None:
    """Count the entries batch ``token`` claimed (dead -> replayed), once whoever asks: the
    claim itself, or the replay that settles it after it was killed before counting."""
    store.summary.moved(
        {i: {**d, "state": str(DEAD)} for i, d in taken.items()}, REPLAYED, once=token
    )


def claim_ids(store: DeadLetterStore, seen: dict[str, Document], claim: Claim) -> Claim:
    """Claim the entries of ``seen`` that are still dead, one conditional update each."""
    dead = {i: doc for i, doc in seen.items() if doc.get("state") == DEAD}
    _open(store, claim, {"ids": list(dead)})
    taken = move(store, dead, REPLAYED, claiming(claim), once=claim.token)
    found: dict[str, Document] = {}
    for chunk in chunks(taken):
        found |= owned(store.entries.find({"_id": {"$in": chunk}}, REPLAY_FIELDS), claim.token)
    return replace(claim, entries=found)


def claiming(claim: Claim) -> Document:
    """The one change a claim makes to an entry: replayed, by this batch."""
    event = {"event": "replayed", "at": now(), "by": claim.by}
    return {
        "$set": {"state": str(REPLAYED), "replay": {"token": claim.token, "by": claim.by}},
        "$inc": {"replays": 1},
        "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
    }


def owned(docs: Iterable[Document], token: str) -> dict[str, Document]:
    """The entries of ``docs`` the batch ``token`` replayed (and still holds)."""
    return {
        d["_id"]: d
        for d in docs
        if d.get("state") == REPLAYED and (d.get("replay") or {}).get("token") == token
    }


def _open(store: DeadLetterStore, claim: Claim, where: Document) -> None:
    until = now() + timedelta(seconds=claim.lease)
    doc = {"_id": claim.token, "by": claim.by, "until": until, **where}
    store.database[OPEN_BATCHES].insert_one(doc)


def close(store: DeadLetterStore, tokens: Sequence[str]) -> int:
    """The batches ``tokens`` are settled (sent, or their entries dead again); how many of
    them were still open."""
    closed = 0
    for chunk in chunks(tokens):
        closed += store.database[OPEN_BATCHES].delete_many({"_id": {"$in": chunk}}).deleted_count
    return closed


def release(store: DeadLetterStore, claim: Claim, by: str, reason: str) -> int:
    """Entries of a batch that will not reach the broker: dead again; how many."""
    event = {"event": "replay_failed", "at": now(), "by": by, "reason": reason}
    return len(move(store, claim.entries, DEAD, _moving(DEAD, event, {"replays": -1})))


def settle(store: DeadLetterStore, send: Publisher) -> dict[str, int]:
    """Finish the batches interrupted replays left open: sent → closed, lapsed → dead; how
    many batches were found sent, and how many entries are replayed or dead again.

    One replay settles at a time: a marker another one is reading is hidden from the rest,
    so a second reader would take a sent batch for one that never was. The open batches are
    read before the journal: a batch is committed only in the first three quarters of its
    lease, so the marker of a lapsed batch that was sent is there."""
    with _settling(store):
        return _settle(store, send)


@contextmanager
def _settling(store: DeadLetterStore) -> Iterator[None]:
    """Hold the store's settling lock (a document with a lease) until the block ends."""
    locks, token = store.database[SETTLING], uuid.uuid4().hex
    while not _took(locks, token):
        time.sleep(0.05)
    try:
        yield
    finally:
        locks.delete_one({"_id": SETTLING, "token": token})


def _took(locks: Collection[Document], token: str) -> bool:
    until = now() + timedelta(seconds=SETTLING_LEASE)
    try:
        locks.insert_one({"_id": SETTLING, "token": token, "until": until})
    except DuplicateKeyError:
        lapsed = {"_id": SETTLING, "until": {"$lt": now()}}
        return (
            locks.find_one_and_update(lapsed, {"$set": {"token": token, "until": until}})
            is not None
        )
    return True


def _settle(store: DeadLetterStore, send: Publisher) -> dict[str, int]:
    lapsed = list(store.database[OPEN_BATCHES].find({"until": {"$lt": now()}}))
    markers, ack = send.journal()
    sent = {b.token for b in markers}
    back = 0
    for doc in lapsed:
        claim = Claim(doc["_id"], doc["by"], 0, _claimed(store, doc))
        _count(store, claim.token, claim.entries)  # if it was killed before it counted them
        if doc["_id"] not in sent:
            back += release(store, claim, "replay journal", "interrupted before it was sent")
    close(store, [d["_id"] for d in lapsed if d["_id"] not in sent])
    found = {"batches_sent": close(store, sorted(sent))}
    earlier = _settle_replaying(store, sent)
    ack()
    found |= {"replayed": earlier[0], "dead_again": back + earlier[1]}
    if any(found.values()):
        log.warning("replay.settled", **found)
    return found


def _claimed(store: DeadLetterStore, batch: Document) -> dict[str, Document]:
    """The entries an open batch still holds, found where it says they are."""
    if "ids" in batch:
        docs: Iterable[Document] = placed(store, batch["ids"]).values()
    else:
        where = Selector(queue=batch.get("queue"), group=batch.get("group"), state=REPLAYED)
        docs = store.read_range(replace(where, since=batch["since"], before=batch["before"]), PLACE)
    return owned(docs, batch["_id"])


def _settle_replaying(store: DeadLetterStore, sent: set[str]) -> tuple[int, int]:
    """Entries an earlier version of the replay left ``replaying`` (claimed, then marked in a
    second write): replayed if their batch's marker is in the journal, else dead once their
    lease ran out. How many each."""
    held = store.entries.find({"state": str(REPLAYING)}, {**PLACE, "replay.until": 1})
    done, lapsed = {}, {}
    for doc in held:
        if doc["replay"]["token"] in sent:
            done[doc["_id"]] = doc
        elif doc["replay"]["until"] < now():
            lapsed[doc["_id"]] = doc
    event = {"event": "replayed", "at": now(), "by": "replay journal"}
    finished = _moving(REPLAYED, event, {"replays": 1})
    event = {"event": "replay_failed", "at": now(), "by": "replay journal"}
    event["reason"] = "interrupted before it was sent"
    back = move(store, lapsed, DEAD, _moving(DEAD, event, {}))
    return len(move(store, done, REPLAYED, finished)), len(back)


def _moving(state: str, event: Document, inc: dict[str, int]) -> Document:
    """The change that ends a claim: to ``state``, owner dropped, ``event`` in the history."""
    update: Document = {
        "$set": {"state": str(state)},
        "$unset": {"replay": ""},
        "$push": {"history": {"$each": [event], "$slice": -HISTORY_KEPT}},
    }
    return update | ({"$inc": inc} if inc else {})
