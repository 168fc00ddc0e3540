"""Folding the event log in memory through a projection's own apply code.

The log is read kind of stream by kind of stream, in the order the projection declares them
(so a kind can rely on the ones before it being folded), in large batches in the order
of the index on ``(stream_id, version)``; streams the projection does not follow are not read.
Only events the projection handles are decoded, the others only advance their stream's
position (up to its last handled event). A commit met ahead of its predecessor waits for it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from pymongo.database import Database

from messages import Event, registry
from readstore.db import Document
from readstore.eventlog import commits
from readstore.follows import Follow, Place, place_stream, stream_range
from readstore.memory import Memory
from readstore.projection import Projection

BATCH = 5000
#: By ``stream_id``: the store walks the index ``(stream_id, version)``, which gives each
#: stream's commits in version order too, without sorting (a sort on both fields, or a
#: projection, costs the embedded store more than the whole commit it would leave out).
ORDER = "stream_id"


@dataclass
class Progress:
    """Where a rebuild stands; ``rate`` in events per second over this run.

    ``total_commits`` is the size of the whole log (counting the followed streams' commits
    would cost the store as much as reading them): for a projection that follows part of
    the log, the fold ends before it and the ETA is an upper bound."""

    phase: str
    events: int = 0
    commits: int = 0
    total_commits: int = 0
    documents: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0


Report = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    pass


def handled_types(projection_type: type[Projection]) -> frozenset[str]:
    """The registered type names ``projection_type`` handles (subclasses included)."""
    return frozenset(
        name for name, cls in registry.types().items() if issubclass(cls, projection_type.handles)
    )


def logged(database: Database[Document], follows: Iterable[Follow]) -> Iterator[Document]:
    """The commits of the kinds of stream ``follows`` names, kind after kind in the order
    declared, each stream's in version order: one range on ``stream_id`` per kind, which the
    index ``stream_version`` serves and orders, so streams not followed are never read. The
    next batch is read by a thread while this one is folded."""
    batches: queue.Queue[list[Document] | BaseException | None] = queue.Queue(maxsize=2)
    kinds = list(dict.fromkeys(follow.stream_type for follow in follows))

    def read() -> None:
        try:
            for kind in kinds:
                for batch in _batches(database, kind):
                    batches.put(batch)
            batches.put(None)
        except BaseException as exc:  # handed to the folding thread, which raises it
            batches.put(exc)

    threading.Thread(target=read, name="sagaworks-fold-reader", daemon=True).start()
    while (item := batches.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield from item


def _batches(database: Database[Document], kind: str) -> Iterator[list[Document]]:
    """The commits of the streams of ``kind``, ``BATCH`` at a time."""
    cursor = commits(database).find({"stream_id": stream_range(kind)})
    cursor = cursor.sort(ORDER, 1).batch_size(BATCH)
    batch: list[Document] = []
    for doc in cursor:
        batch.append(doc)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class Fold:
    """One fold of the log into memory, through ``projection`` (built on a ``Memory``)."""

    def __init__(self, projection: Projection, report: Report = ignore) -> None:
        self.projection = projection
        self.handled = handled_types(type(projection))
        self.report = report
        self.positions: dict[str, int] = {}
        self.waiting: dict[str, dict[int, Document]] = {}
        self.unhandled: dict[str, list[Place]] = {}

    def run(self, progress: Progress, tick: Callable[[], None] = lambda: None) -> None:
        for doc in logged(self.projection.database, self.projection.follows):
            progress.events += self.commit(doc)
            progress.commits += 1
            if progress.commits % 2000 == 0:
                self.report(progress)
                tick()
        if any(self.waiting.values()):
            raise RuntimeError(
                f"gaps in the log: {sorted(k for k, v in self.waiting.items() if v)}"
            )
        self.report(progress)

    def commit(self, doc: Document) -> int:
        """Fold ``doc`` if its stream is level with it (then any commit waiting behind it)."""
        stream = doc["stream_id"]
        if doc["version_from"] != self.positions.get(stream, 0) + 1:
            self.waiting.setdefault(stream, {})[doc["version_from"]] = doc
            return 0
        folded = self._events(doc)
        waiting = self.waiting.get(stream)
        while waiting and (self.positions[stream] + 1) in waiting:
            folded += self._events(waiting.pop(self.positions[stream] + 1))
        return folded

    def _events(self, doc: Document) -> int:
        """Fold a commit's events. An event not handled only advances the position, and
        only once a handled one follows it: live, nothing delivers a stream's trailing
        unhandled events, so a rebuild leaves them unapplied as well."""
        stream, first = doc["stream_id"], doc["version_from"]
        for offset, raw in enumerate(doc["events"]):
            where = place_stream(self.projection.follows, stream, first + offset)
            assert where is not None, stream
            event = self._decoded(raw, stream, where.version)
            if event is None:
                self.unhandled.setdefault(stream, []).append(where)
                continue
            for skipped in self.unhandled.pop(stream, ()):
                self.projection.fold(skipped, None)
            self.projection.fold(where, event)
        self.positions[stream] = doc["version"]
        return len(doc["events"])

    def _decoded(self, raw: Document, stream: str, version: int) -> Event | None:
        if raw.get("type") not in self.handled:
            return None
        event = registry.decode({**raw, "stream_id": stream, "stream_version": version})
        assert isinstance(event, Event)
        return event


def fold(
    database: Database[Document],
    kind: type[Projection],
    collection: str | None = None,
    report: Report = ignore,
    tick: Callable[[], None] = lambda: None,
) -> tuple[Projection, Memory, Progress]:
    """``kind``'s documents as the whole log makes them, in memory (named as ``collection``)."""
    memory = Memory()
    projection = kind(database, collection=collection, memory=memory)
    progress = Progress("fold", total_commits=commits(database).estimated_document_count())
    Fold(projection, report).run(progress, tick)
    return projection, memory, progress
