"""Aggregates: state rebuilt from a stream's events, deciding new events under business rules."""

from __future__ import annotations

from typing import ClassVar, Self

from messages import Event
from readstore.eventlog import Commit


class Aggregate:
    """A consistency boundary. ``when_<EventType>`` methods evolve state; deciding methods
    check the rules and ``record`` new events.

    State is the class-annotated attributes (``status: str = "new"``): they are what a
    snapshot stores. Bump ``SCHEMA_VERSION`` when they change meaning, and older snapshots
    are ignored (and rebuilt) instead of restored.
    """

    #: Prefix of this aggregate's stream ids (``order`` → ``order-<id>``).
    stream_type: ClassVar[str]
    #: Version of the state's shape; snapshots of another version are not restored.
    SCHEMA_VERSION: ClassVar[int] = 1
    #: Take a snapshot every this many events (0: never); settings may override it by type.
    SNAPSHOT_EVERY: ClassVar[int] = 100
    #: Every aggregate type by its stream type.
    TYPES: ClassVar[dict[str, type[Aggregate]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "stream_type" in cls.__dict__:
            Aggregate.TYPES[cls.stream_type] = cls

    @classmethod
    def type_of_stream(cls, stream_id: str) -> type[Aggregate] | None:
        """The aggregate type whose streams ``stream_id`` belongs to (``order-…`` → Order)."""
        return cls.TYPES.get(stream_id.split("-", 1)[0])

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.version = 0
        #: The version of the snapshot this aggregate was loaded from (0: none).
        self.snapshot_version = 0
        self.changes: list[Event] = []
        #: The commits of this stream (after its snapshot) by the id of the command that made them.
        self.commits_by_command: dict[str, Commit] = {}

    @classmethod
    def from_commits(cls, stream_id: str, commits: list[Commit]) -> Self:
        aggregate = cls(stream_id)
        aggregate.apply_commits(commits)
        return aggregate

    def apply_commits(self, commits: list[Commit]) -> None:
        for commit in commits:
            for event in commit.events:
                self.mutate(event)
            self.version = commit.version
            if commit.command_id:
                self.commits_by_command[commit.command_id] = commit

    @property
    def exists(self) -> bool:
        return self.version > 0

    def record(self, event: Event) -> None:
        self.mutate(event)
        self.changes.append(event)

    def mutate(self, event: Event) -> None:
        handler = getattr(self, f"when_{event.type_name()}", None)
        if handler is None:
            raise TypeError(f"{type(self).__name__} cannot apply {event.type_name()}")
        handler(event)
