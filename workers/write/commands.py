"""The command pipeline: load, decide, append atomically, dispatch through the outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from messages import Command
from messages.errors import CommandRejected, ConcurrencyError, InvalidMessageError
from readstore.consistency import ConsistencyToken
from readstore.eventlog import Commit
from workers.write import snapshots
from workers.write.aggregates import Aggregate
from workers.write.eventstore import DuplicateCommand, EventStore
from workers.write.outbox import dispatch
from workers.write.snapshots import Snapshot, SnapshotStore

log = structlog.get_logger("sagaworks.commands")

A = TypeVar("A", bound=Aggregate)
Decide = Callable[[Any, Any, "Session"], None]
Related = Callable[[Any], list[str]]


def _none(_: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class Route:
    aggregate: type[Aggregate]
    decide: Decide
    #: The other streams the handler will read, fetched with its own in one round trip.
    related: Related = _none
    #: The command starts a new stream: append first, read only if the stream exists.
    creates: bool = False


HANDLERS: dict[type[Command], Route] = {}


def handles(
    command_type: type[Command],
    aggregate: type[Aggregate],
    related: Related = _none,
    *,
    creates: bool = False,
) -> Callable[[Decide], Decide]:
    """Register ``decide(aggregate, command, session)`` as the handler of ``command_type``.

    ``related(command)`` names the other streams ``decide`` loads through the session; they
    are read together with the aggregate's own stream, in one query. ``creates``: the
    command normally starts its stream, so it is decided on an empty aggregate and appended
    at version 0 without reading the stream first (``execute``).
    """

    def register(fn: Decide) -> Decide:
        HANDLERS[command_type] = Route(aggregate, fn, related, creates)
        return fn

    return register


@dataclass
class Session:
    """What a handler may read besides its own aggregate: other aggregates, by stream.

    Aggregates load from their snapshot (when one fits) and the commits after it.
    """

    store: EventStore
    prefetched: dict[str, list[Commit]] = field(default_factory=dict)
    loaded: dict[str, Aggregate] = field(default_factory=dict)
    snapshots: dict[str, Snapshot | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.snapshot_store = SnapshotStore(self.store.database)

    def prefetch(self, stream_ids: list[str]) -> None:
        found = self.snapshot_store.get_many([s for s in stream_ids if _snapshotted(s)])
        self.snapshots.update({s: found.get(s) for s in stream_ids})
        after = {s: snapshot.version for s, snapshot in found.items()}
        self.prefetched.update(self.store.load_streams(stream_ids, after))

    def load(self, aggregate_type: type[A], stream_id: str) -> A:
        if stream_id in self.snapshots:
            snapshot = self.snapshots.pop(stream_id)
        else:
            snapshot = self.snapshot_store.get(stream_id) if _snapshotted(stream_id) else None
        commits = self.prefetched.pop(stream_id, None)
        aggregate = snapshots.load(aggregate_type, stream_id, snapshot, commits, self.store.load)
        if snapshots.is_due(aggregate_type, aggregate.snapshot_version, aggregate.version):
            self.snapshot_store.save(aggregate, aggregate.version)  # missing, or another schema
        self.loaded[stream_id] = aggregate
        return aggregate


def _snapshotted(stream_id: str) -> bool:
    """Whether streams like this one may have a snapshot (short-lived ones never do)."""
    aggregate_type = Aggregate.type_of_stream(stream_id)
    return aggregate_type is None or snapshots.snapshot_every(aggregate_type) > 0


@dataclass(frozen=True)
class CommandResult:
    token: ConsistencyToken
    committed: bool
    duplicate: bool = False


def execute(command: Command, store: EventStore, attempts: int = 5) -> CommandResult:
    """Run ``command`` to one commit (or none), at most once in effect."""
    route = HANDLERS[type(command)]
    if route.creates and (created := _create(command, store, route)) is not None:
        return created
    stream_id = command.stream_id()
    for _ in range(attempts):
        session = Session(store)
        session.prefetch([stream_id, *route.related(command)])
        aggregate = session.load(route.aggregate, stream_id)
        earlier = aggregate.commits_by_command.get(str(command.message_id))
        if earlier is None and aggregate.snapshot_version:
            earlier = store.commit_for(stream_id, command)  # committed before the snapshot?
        if earlier is not None:
            return _finish(store, earlier, duplicate=True)
        try:
            route.decide(aggregate, command, session)
        except CommandRejected:
            # A redelivery whose commit lies before a snapshot is still a duplicate.
            earlier = store.commit_for(stream_id, command)
            if earlier is not None:
                return _finish(store, earlier, duplicate=True)
            raise
        if not aggregate.changes:
            return CommandResult(ConsistencyToken(stream_id, aggregate.version), committed=False)
        try:
            commit = store.append(stream_id, aggregate.version, aggregate.changes, command)
        except DuplicateCommand as dup:
            return _finish(store, dup.commit, duplicate=True)
        except ConcurrencyError:
            log.info("command.conflicted", stream_id=stream_id, version=aggregate.version)
            continue
        _snapshot_if_due(session, aggregate, commit)
        return _finish(store, commit)
    raise ConcurrencyError(f"{stream_id}: still conflicting after {attempts} attempts")


def _create(command: Command, store: EventStore, route: Route) -> CommandResult | None:
    """Optimistic append for a command that starts its stream: no read of the stream.

    The unique indexes decide: the commit ``<stream>@1`` collides if the stream exists, and
    ``(stream, command id)`` recognises a redelivered command. ``None``: the stream exists
    (or the empty aggregate rejected the command), and the reading path decides instead.
    Like any redelivery, a duplicate decides again before the insert finds it out: what
    ``decide`` calls outside the store must be idempotent (the payment gateway is, by key).
    """
    stream_id = command.stream_id()
    session = Session(store)
    if related := route.related(command):
        session.prefetch(related)
    aggregate = route.aggregate(stream_id)
    try:
        route.decide(aggregate, command, session)
    except CommandRejected:
        return None
    if not aggregate.changes:
        return None
    try:
        commit = store.append(stream_id, 0, aggregate.changes, command)
    except DuplicateCommand as dup:
        return _finish(store, dup.commit, duplicate=True)
    except ConcurrencyError:
        return None
    _snapshot_if_due(session, aggregate, commit)
    return _finish(store, commit)


def _snapshot_if_due(session: Session, aggregate: Aggregate, commit: Commit) -> None:
    """After a commit that crosses a multiple of N, store the state it left (one write)."""
    if snapshots.is_due(type(aggregate), commit.version_from - 1, commit.version):
        session.snapshot_store.save(aggregate, commit.version)


def _finish(store: EventStore, commit: Commit, duplicate: bool = False) -> CommandResult:
    if not commit.dispatched:
        dispatch(commit, store)
    return CommandResult(ConsistencyToken(commit.stream_id, commit.version), True, duplicate)


def handle(message: Any, context: str, attempts: int = 5) -> CommandResult:
    """The body of a context's command actor: check the message belongs here, run it, log it."""
    if not isinstance(message, Command) or context != message.CONTEXT:
        raise InvalidMessageError(f"{message.type_name()} is not a command of {context!r}")
    result = execute(message, EventStore(), attempts)
    log.info(
        "command.handled",
        command=message.type_name(),
        token=str(result.token),
        committed=result.committed,
        duplicate=result.duplicate,
    )
    return result
