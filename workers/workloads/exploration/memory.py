"""In-memory stores with the semantics of the MongoDB ones, for exploring message orderings.

``MemoryEventStore`` appends at an expected version and refuses a second commit of one
command on a stream (``DuplicateCommand``), like ``EventStore`` with its unique indexes;
``MemorySagaStore`` writes a saga only at the version it was read at, appends pending
messages and removes them one by one, like ``SagaStore``. Both copy in O(streams), so an
exploration can branch a world cheaply. Snapshots are not kept (a null collection).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from messages import Command, Event, Message
from messages.errors import ConcurrencyError
from readstore.eventlog import Commit, commit_id
from sagas.state import Fulfilment
from sagas.store import SagaRecord, stepped
from workers.write.eventstore import Append, DuplicateCommand, EventStore

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class _NullCollection:
    """Where snapshots would go: nothing is kept, nothing is found."""

    def find(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def update_one(self, *args: Any, **kwargs: Any) -> None:
        return None


class _NullDatabase:
    """A database of one world: named afresh for each, so no world sees another's cache."""

    client: Any = None

    def __init__(self) -> None:
        self.name = uuid.uuid4().hex

    def __getitem__(self, name: str) -> _NullCollection:
        return _NullCollection()


class MemoryEventStore(EventStore):
    """The event store's contract in a dict of streams."""

    def __init__(self) -> None:  # no MongoDB: nothing of the parent's to set up
        self.database: Any = _NullDatabase()
        self.streams: dict[str, list[Commit]] = {}
        self.appended: list[Commit] = []
        #: Per stream, the kinds of its events in order: what a world's key needs of it.
        self.signature: dict[str, tuple[str, ...]] = {}
        #: Called before each append: lets an exploration run another handler in between.
        self.before_write: Callable[[], None] | None = None

    def copy(self) -> MemoryEventStore:
        twin = MemoryEventStore()
        twin.streams = {k: list(v) for k, v in self.streams.items()}
        twin.appended = list(self.appended)
        twin.signature = dict(self.signature)
        return twin

    def load(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        return [c for c in self.streams.get(stream_id, []) if c.version > after_version]

    def load_streams(
        self, stream_ids: list[str], after: dict[str, int] | None = None
    ) -> dict[str, list[Commit]]:
        after = after or {}
        return {s: self.load(s, after.get(s, 0)) for s in dict.fromkeys(stream_ids)}

    def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        command: Command | None = None,
    ) -> Commit:
        if self.before_write is not None:
            self.before_write()
        stream = self.streams.setdefault(stream_id, [])
        existing = self.commit_for(stream_id, command) if command is not None else None
        if existing is not None:
            raise DuplicateCommand(existing)
        if (stream[-1].version if stream else 0) != expected_version:
            raise ConcurrencyError(f"{stream_id} moved past version {expected_version}")
        first = expected_version + 1
        commit = Commit(
            id=commit_id(stream_id, first),
            stream_id=stream_id,
            version_from=first,
            version=expected_version + len(events),
            events=tuple(e.recorded(stream_id, first + i) for i, e in enumerate(events)),
            command_id=str(command.message_id) if command is not None else None,
            committed_at=_EPOCH,
            dispatched=True,  # the world reads ``appended`` as its outbox
        )
        stream.append(commit)
        self.appended.append(commit)
        kinds = tuple(e.type_name() for e in events)
        self.signature[stream_id] = self.signature.get(stream_id, ()) + kinds
        return commit

    def append_all(self, appends: Sequence[Append]) -> list[Commit]:
        stored: list[Commit] = []
        for append in appends:
            try:
                stored.append(self.append(*append))
            except (DuplicateCommand, ConcurrencyError):
                break
        return stored

    def commit_for(self, stream_id: str, command: Command | str) -> Commit | None:
        command_id = command if isinstance(command, str) else str(command.message_id)
        return next(
            (c for c in self.streams.get(stream_id, []) if c.command_id == command_id), None
        )

    def events(self, stream_id: str) -> list[Event]:
        return [e for c in self.streams.get(stream_id, []) for e in c.events]


@dataclass
class MemorySagaStore:
    """Sagas by id, each a ``SagaRecord``; every write returns a new store's worth of dict."""

    sagas: dict[str, SagaRecord]
    #: Called before each write: lets an exploration run another handler in between.
    before_write: Callable[[], None] | None = field(default=None, compare=False)

    def copy(self) -> MemorySagaStore:
        return MemorySagaStore(dict(self.sagas))

    def load(self, saga_id: str) -> SagaRecord | None:
        return self.sagas.get(saga_id)

    def create(
        self, state: Fulfilment, cause: Message, out: Sequence[Message]
    ) -> SagaRecord | None:
        if self.before_write is not None:
            self.before_write()
        saga_id = str(state.order_id)
        if saga_id in self.sagas:
            return None
        handled = frozenset({str(cause.message_id)})
        self.sagas[saga_id] = SagaRecord(saga_id, 1, state, handled, tuple(out))
        return self.sagas[saga_id]

    def save(
        self, record: SagaRecord, state: Fulfilment, cause: Message, out: Sequence[Message]
    ) -> SagaRecord | None:
        if self.before_write is not None:
            self.before_write()
        current = self.sagas.get(record.saga_id)
        if current is None or current.version != record.version:
            return None
        self.sagas[record.saga_id] = stepped(current, state, cause, out)
        return self.sagas[record.saga_id]

    def forget(self, saga_id: str, message_ids: list[str]) -> None:
        record = self.sagas[saga_id]
        pending = tuple(m for m in record.pending if str(m.message_id) not in message_ids)
        self.sagas[saga_id] = replace(record, pending=pending)
