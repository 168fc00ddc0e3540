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
from workers.write.cache import CACHE, RELATED_SECONDS, AggregateCache
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

    Aggregates load from the process's cache (``workers.write.cache``) unless ``fresh``,
    else from their snapshot (when one fits) and the commits after it. A stream in
    ``owned`` (one the command appends to, which the append checks) is served from the cache
    whatever its age; any other only while its entry is recent. ``used_cache``: some
    aggregate came from the cache, so a decision that appends nothing must be taken again
    on a fresh read.
    """

    store: EventStore
    cache: AggregateCache | None = None
    owned: frozenset[str] = frozenset()
    fresh: bool = False
    used_cache: bool = False
    prefetched: dict[str, list[Commit]] = field(default_factory=dict)
    loaded: dict[str, Aggregate] = field(default_factory=dict)
    snapshots: dict[str, Snapshot | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.snapshot_store = SnapshotStore(self.store.database)

    def prefetch(self, stream_ids: list[str]) -> None:
        stream_ids = [s for s in stream_ids if not self._cached(s)]
        found = self.snapshot_store.get_many([s for s in stream_ids if _snapshotted(s)])
        self.snapshots.update({s: found.get(s) for s in stream_ids})
        after = {s: snapshot.version for s, snapshot in found.items()}
        self.prefetched.update(self.store.load_streams(stream_ids, after))

    def load(self, aggregate_type: type[A], stream_id: str) -> A:
        hit = self._hit(aggregate_type, stream_id)
        aggregate = hit if hit is not None else self._read(aggregate_type, stream_id)
        self.loaded[stream_id] = aggregate
        return aggregate

    def committed(self, aggregate: Aggregate, commit: Commit) -> None:
        """``aggregate`` now stands at ``commit``: snapshot it if due, and cache it."""
        if snapshots.is_due(type(aggregate), commit.version_from - 1, commit.version):
            self.snapshot_store.save(aggregate, commit.version)
        aggregate.version = commit.version
        if self.cache is not None:
            self.cache.put(self.store.database, aggregate)

    def forget(self, stream_id: str) -> None:
        """Another writer moved ``stream_id``: its cached state is stale."""
        if self.cache is not None:
            self.cache.forget(self.store.database, stream_id)

    def _max_age(self, stream_id: str) -> float | None:
        return None if stream_id in self.owned else RELATED_SECONDS

    def _cached(self, stream_id: str) -> bool:
        if self.cache is None or self.fresh:
            return False
        return self.cache.has(self.store.database, stream_id, self._max_age(stream_id))

    def _hit(self, aggregate_type: type[A], stream_id: str) -> A | None:
        if self.cache is None or self.fresh:
            return None
        database, max_age = self.store.database, self._max_age(stream_id)
        hit = self.cache.get(database, aggregate_type, stream_id, max_age)
        self.used_cache = self.used_cache or hit is not None
        return hit

    def _read(self, aggregate_type: type[A], stream_id: str) -> A:
        if stream_id in self.snapshots:
            snapshot = self.snapshots.pop(stream_id)
        else:
            snapshot = self.snapshot_store.get(stream_id) if _snapshotted(stream_id) else None
        commits = self.prefetched.pop(stream_id, None)
        aggregate = snapshots.load(aggregate_type, stream_id, snapshot, commits, self.store.load)
        if snapshots.is_due(aggregate_type, aggregate.snapshot_version, aggregate.version):
            self.snapshot_store.save(aggregate, aggregate.version)  # missing, or another schema
        if self.cache is not None:
            self.cache.put(self.store.database, aggregate)
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
    """Run ``command`` to one commit (or none), at most once in effect.

    The first attempt may decide on cached aggregates; after a conflict, or a decision on
    cached state that appends nothing, the next ones read the streams.
    """
    route = HANDLERS[type(command)]
    if route.creates and (created := _create(command, store, route)) is not None:
        return created
    stream_id = command.stream_id()
    session = Session(store, CACHE, frozenset({stream_id}))
    tries = 0
    while tries < attempts:
        if (result := _attempt(command, route, session)) is not None:
            return result
        tries += 0 if session.used_cache else 1  # a stale cached copy costs no attempt
        session = Session(store, CACHE, frozenset({stream_id}), fresh=True)
    raise ConcurrencyError(f"{stream_id}: still conflicting after {attempts} attempts")


def _attempt(command: Command, route: Route, session: Session) -> CommandResult | None:
    """Load, decide, append; ``None``: try again on a fresh read."""
    store, stream_id = session.store, command.stream_id()
    session.prefetch([stream_id, *route.related(command)])
    aggregate = session.load(route.aggregate, stream_id)
    earlier = aggregate.commits_by_command.get(str(command.message_id))
    if earlier is None and aggregate.snapshot_version and not session.used_cache:
        earlier = store.commit_for(stream_id, command)  # committed before the snapshot?
    if earlier is not None:
        return _finish(store, earlier, duplicate=True)
    try:
        route.decide(aggregate, command, session)
    except CommandRejected:
        if session.used_cache:
            return None
        # A redelivery whose commit lies before a snapshot is still a duplicate.
        earlier = store.commit_for(stream_id, command)
        if earlier is not None:
            return _finish(store, earlier, duplicate=True)
        raise
    if not aggregate.changes:
        if session.used_cache:
            return None
        return CommandResult(ConsistencyToken(stream_id, aggregate.version), committed=False)
    return _append(session, aggregate, aggregate.version, command)


def _append(
    session: Session, aggregate: Aggregate, expected: int, command: Command
) -> CommandResult | None:
    """Append ``aggregate``'s changes at ``expected``; ``None`` if another writer came first."""
    store, stream_id = session.store, aggregate.stream_id
    try:
        commit = store.append(stream_id, expected, aggregate.changes, command)
    except DuplicateCommand as dup:
        session.forget(stream_id)
        return _finish(store, dup.commit, duplicate=True)
    except ConcurrencyError:
        log.info("command.conflicted", stream_id=stream_id, version=expected)
        session.forget(stream_id)
        return None
    session.committed(aggregate, commit)
    return _finish(store, commit)


def _create(command: Command, store: EventStore, route: Route) -> CommandResult | None:
    """Optimistic append for a command that starts its stream: no read of the stream.

    The unique indexes decide: the commit ``<stream>@1`` collides if the stream exists, and
    ``(stream, command id)`` recognises a redelivered command. ``None``: the stream exists
    (or the empty aggregate rejected the command), and the reading path decides instead.
    Like any redelivery, a duplicate decides again before the insert finds it out: what
    ``decide`` calls outside the store must be idempotent (the payment gateway is, by key).
    """
    stream_id = command.stream_id()
    session = Session(store, CACHE)
    if related := route.related(command):
        session.prefetch(related)
    aggregate = route.aggregate(stream_id)
    try:
        route.decide(aggregate, command, session)
    except CommandRejected:
        return None
    if not aggregate.changes:
        return None
    return _append(session, aggregate, 0, command)


def _finish(store: EventStore, commit: Commit, duplicate: bool = False) -> CommandResult:
    """Dispatch ``commit`` (again, for a duplicate command: whether it was sent is in no
    receipt it is cheap to look up, and every consumer drops an event it has seen)."""
    if not commit.dispatched:  # only commits an older release marked say they were sent
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
