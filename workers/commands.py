"""The command pipeline: load, decide, append atomically, dispatch through the outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from messages import Command
from readstore.consistency import ConsistencyToken
from readstore.eventlog import Commit
from workers.aggregates import Aggregate
from workers.errors import CommandRejected, ConcurrencyError, InvalidMessageError
from workers.eventstore import DuplicateCommand, EventStore
from workers.outbox import dispatch

log = structlog.get_logger("sagaworks.commands")

A = TypeVar("A", bound=Aggregate)
Decide = Callable[[Any, Any, "Session"], None]


@dataclass(frozen=True)
class Route:
    aggregate: type[Aggregate]
    decide: Decide


HANDLERS: dict[type[Command], Route] = {}


def handles(command_type: type[Command], aggregate: type[Aggregate]) -> Callable[[Decide], Decide]:
    """Register ``decide(aggregate, command, session)`` as the handler of ``command_type``."""

    def register(fn: Decide) -> Decide:
        HANDLERS[command_type] = Route(aggregate, fn)
        return fn

    return register


@dataclass
class Session:
    """What a handler may read besides its own aggregate: other aggregates, by stream."""

    store: EventStore
    loaded: dict[str, Aggregate] = field(default_factory=dict)

    def load(self, aggregate_type: type[A], stream_id: str) -> A:
        aggregate = aggregate_type.from_commits(stream_id, self.store.load(stream_id))
        self.loaded[stream_id] = aggregate
        return aggregate


@dataclass(frozen=True)
class CommandResult:
    token: ConsistencyToken
    committed: bool
    duplicate: bool = False


def execute(command: Command, store: EventStore, attempts: int = 5) -> CommandResult:
    """Run ``command`` to one commit (or none), at most once in effect."""
    route = HANDLERS[type(command)]
    stream_id = command.stream_id()
    for _ in range(attempts):
        session = Session(store)
        aggregate = session.load(route.aggregate, stream_id)
        earlier = aggregate.commits_by_command.get(str(command.message_id))
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
        return _finish(store, commit)
    raise ConcurrencyError(f"{stream_id}: still conflicting after {attempts} attempts")


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
