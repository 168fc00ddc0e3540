"""The MongoDB event store: one document per command ("commit"), appended atomically.

A commit's ``_id`` is ``<stream>@<first version>``: two writers appending at the same
expected version collide on it, and exactly one wins. ``(stream_id, command_id)`` is unique,
so a command delivered again after its commit succeeded cannot commit twice. A commit is
never updated once stored: its dispatch is recorded by a receipt (``workers.write.receipts``),
and the relay re-sends any that no receipt names past its grace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import NoReturn

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from messages import Command, Event, encode
from messages.errors import ConcurrencyError
from readstore.db import Document, get_database
from readstore.eventlog import Commit, commit_id, commits, read_commits
from workers.write import receipts

#: One commit to store: the stream, the version it follows, its events, the command (if any).
Append = tuple[str, int, Sequence[Event], Command | None]
_DUPLICATE_KEY = 11000


class DuplicateCommand(Exception):
    """The command was committed before; ``commit`` is what it produced."""

    def __init__(self, commit: Commit) -> None:
        super().__init__(commit.id)
        self.commit = commit


class EventStore:
    def __init__(self, database: Database[Document] | None = None) -> None:
        self.database = database if database is not None else get_database()
        self.commits = commits(self.database)

    def ensure_indexes(self) -> None:
        self.commits.create_index(
            [("stream_id", ASCENDING), ("command_id", ASCENDING)],
            unique=True,
            partialFilterExpression={"command_id": {"$type": "string"}},
            name="command_once",
        )
        self.commits.create_index(
            [("committed_at", ASCENDING)],
            partialFilterExpression={"dispatched": False},
            name="outbox",
        )
        self.commits.create_index(
            [("stream_id", ASCENDING), ("version", ASCENDING)], name="stream_version"
        )
        # Sparse: only the commits the relay parked have it, so status counts them from the
        # index instead of reading every commit.
        self.commits.create_index([("parked.at", ASCENDING)], sparse=True, name="parked")
        receipts.ensure_indexes(self.database)

    def load(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        return read_commits(self.database, stream_id, after_version)

    def load_streams(
        self, stream_ids: list[str], after: dict[str, int] | None = None
    ) -> dict[str, list[Commit]]:
        """The commits of each of ``stream_ids`` after ``after[stream]`` (0 when absent).

        The streams read from the start share one indexed ``$in`` query; a stream read from a
        snapshot gets its own query, so a long stream's head is never read.
        """
        after = after or {}
        streams = list(dict.fromkeys(stream_ids))
        whole = [s for s in streams if not after.get(s)]
        found: dict[str, list[Commit]] = {s: [] for s in streams}
        if len(whole) == 1:
            found[whole[0]] = read_commits(self.database, whole[0])
        elif whole:
            query = {"stream_id": {"$in": whole}}
            for doc in self.commits.find(query).sort([("stream_id", 1), ("version", 1)]):
                found[doc["stream_id"]].append(Commit.from_document(doc))
        for s in streams:
            if after.get(s):
                found[s] = read_commits(self.database, s, after[s])
        return found

    def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        command: Command | None = None,
    ) -> Commit:
        """Store ``events`` as one commit after ``expected_version``; one round trip."""
        doc = _document(stream_id, expected_version, events, command)
        try:
            self.commits.insert_one(doc)
        except DuplicateKeyError:
            self._raise_conflict(stream_id, expected_version, command)
        return _commit(doc, events)

    def append_all(self, appends: Sequence[Append]) -> list[Commit]:
        """Store several commits in one round trip, in order, up to the first that collides.

        The commits stored, a prefix of ``appends``: like that many ``append`` calls in a row
        that stopped at the first conflict or duplicate, which the caller then tells apart
        by appending that one again on a fresh read.
        """
        docs = [_document(*append) for append in appends]
        try:
            self.commits.insert_many(docs, ordered=True)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or errors[0].get("code") != _DUPLICATE_KEY:
                raise
            docs = docs[: errors[0]["index"]]
        return [_commit(doc, append[2]) for doc, append in zip(docs, appends, strict=False)]

    def _raise_conflict(self, stream_id: str, expected: int, command: Command | None) -> NoReturn:
        existing = self.commit_for(stream_id, command) if command else None
        if existing is not None:
            raise DuplicateCommand(existing)
        raise ConcurrencyError(f"{stream_id} moved past version {expected}")

    def commit_for(self, stream_id: str, command: Command | str) -> Commit | None:
        """The commit ``command`` produced on ``stream_id``, if it was committed."""
        command_id = command if isinstance(command, str) else str(command.message_id)
        doc = self.commits.find_one({"stream_id": stream_id, "command_id": command_id})
        return Commit.from_document(doc) if doc else None

    def undispatched(self, older_than: timedelta, limit: int = 500) -> list[Commit]:
        """Commits past the relay's watermark, older than ``older_than``, that no receipt
        names (the relay's work), oldest first."""
        cutoff = datetime.now(UTC) - older_than
        ids = [i for i, _ in islice(receipts.pending(self.database, cutoff), limit)]
        found = self.commits.find({"_id": {"$in": ids}}).sort("committed_at", ASCENDING)
        return [Commit.from_document(doc) for doc in found]

    @staticmethod
    def parked_query() -> Document:
        """The commits the relay parked: a range of the sparse ``parked`` index."""
        return {"parked.at": {"$exists": True}}

    def count_parked(self) -> int:
        return self.commits.count_documents(self.parked_query())

    def count_undispatched(self, examine: int | None = None) -> int:
        """Commits past the relay's watermark that no receipt names yet (parked ones aside),
        among at most about ``examine`` of them (``None``: all)."""
        now = datetime.now(UTC)
        return sum(1 for _ in receipts.pending(self.database, now, examine=examine))


def _document(
    stream_id: str, expected_version: int, events: Sequence[Event], command: Command | None
) -> Document:
    if not events:
        raise ValueError("a commit needs at least one event")
    first = expected_version + 1
    doc: Document = {
        "_id": commit_id(stream_id, first),
        "stream_id": stream_id,
        "version_from": first,
        "version": expected_version + len(events),
        "events": [_stored(e) for e in events],
        "committed_at": datetime.now(UTC),
        "dispatched": False,  # for ever: receipts record the dispatch (the ``outbox`` index)
    }
    if command is not None:
        doc["command_id"] = str(command.message_id)
        doc["correlation_id"] = str(command.correlation)
    return doc


def _commit(doc: Document, events: Sequence[Event]) -> Commit:
    """The commit ``doc`` stored, with ``events`` as recorded on its stream."""
    stream_id, first = doc["stream_id"], doc["version_from"]
    return Commit(
        id=doc["_id"],
        stream_id=stream_id,
        version_from=first,
        version=doc["version"],
        events=tuple(e.recorded(stream_id, first + i) for i, e in enumerate(events)),
        command_id=doc.get("command_id"),
        committed_at=doc["committed_at"],
        dispatched=False,
    )


def _stored(event: Event) -> Document:
    wire = encode(event)
    wire.pop("stream_id", None)
    wire.pop("stream_version", None)
    return wire
