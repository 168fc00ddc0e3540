"""State changes of dead letters that move the summary by exactly what they changed.

Each entry changes only while it is still in the state the caller saw (and, while it is
``replaying``, still owned by the replay token the caller saw): an entry that another
operator, or an earlier run, already moved is not matched, so it is not counted twice. Each
change stamps the entries it made with a fresh ``move`` token; when fewer entries changed
than were asked for, the ones this call changed are read back by that token, and only those
are counted. Reads by id go in chunks: a store that matches ``$in`` by scanning the list for
each candidate (SecantusDB) reads a chunk in linear time, a whole 100k list in quadratic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from pymongo import UpdateOne

from readstore.db import Document

if TYPE_CHECKING:
    from workers.deadletters.store import DeadLetterStore

#: The field naming the last change that moved an entry.
MOVE = "move"
#: Ids per read by id.
CHUNK = 200
#: What a change must know of an entry: where it is counted (and who owns it, if replaying).
PLACE = {"state": 1, "queue": 1, "group": 1, "replay.token": 1, "replayable": 1}


def chunks(ids: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def placed(store: DeadLetterStore, ids: Sequence[str]) -> dict[str, Document]:
    """Where each of ``ids`` is now (state, queue, group, owner); absent ids are missing."""
    found: dict[str, Document] = {}
    for chunk in chunks(ids):
        found.update((d["_id"], d) for d in store.entries.find({"_id": {"$in": chunk}}, PLACE))
    return found


def condition(entry_id: str, seen: Document) -> Document:
    """The entry as the caller saw it: same state and, while replaying, the same owner."""
    query: Document = {"_id": entry_id, "state": seen["state"]}
    token = (seen.get("replay") or {}).get("token")
    if token is not None:
        query["replay.token"] = token
    return query


def stamped(update: Document, token: str) -> Document:
    return {**update, "$set": {**update.get("$set", {}), MOVE: token}}


def move(
    store: DeadLetterStore,
    seen: Mapping[str, Document],
    target: str,
    update: Document,
    *,
    once: str | None = None,
) -> list[str]:
    """Apply ``update`` (which moves to ``target``) to each entry of ``seen`` still as seen;
    count exactly those in the summary (with ``once``, a claim's token: once per token); the
    ids moved."""
    if not seen:
        return []
    token = uuid.uuid4().hex
    ops = [UpdateOne(condition(i, doc), stamped(update, token)) for i, doc in seen.items()]
    modified = store.entries.bulk_write(ops, ordered=False).modified_count
    known = all("group" in doc for doc in seen.values())
    if modified == len(seen) and known:
        moved = dict(seen)
    elif modified == 0:
        moved = {}
    else:
        moved = {
            i: {**doc, "state": seen[i]["state"]} for i, doc in _stamped_by(store, seen, token)
        }
    store.summary.moved(moved, target, once=once)
    return list(moved)


def _stamped_by(
    store: DeadLetterStore, seen: Mapping[str, Document], token: str
) -> Iterator[tuple[str, Document]]:
    for chunk in chunks(list(seen)):
        for doc in store.entries.find({"_id": {"$in": chunk}, MOVE: token}, PLACE):
            yield doc["_id"], doc


def delete(store: DeadLetterStore, seen: Mapping[str, Document]) -> int:
    """Delete the entries of ``seen`` still as seen, uncounting exactly those."""
    moved = move(store, seen, "purged", {"$set": {"state": "purged"}})
    store.summary.moved({i: {**seen[i], "state": "purged"} for i in moved}, None)
    for chunk in chunks(moved):
        store.entries.delete_many({"_id": {"$in": chunk}, "state": "purged"})
    return len(moved)
