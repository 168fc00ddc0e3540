"""Rebuilding a projection from the event store into a fresh collection, then swapping it in.

1. *Replay*: every commit, stream by stream, into ``<collection>_rebuild_<id>`` with batched
   conditional updates (the same per-stream positions as live applies, so a replayed batch
   is a no-op the second time). Progress (the last commit of the last whole stream) is saved
   in ``projection_rebuilds`` after each batch: a killed rebuild resumes from there.
2. *Catch-up*: commits committed since the rebuild started (minus a safety margin, for
   commits whose insert trailed their timestamp) are applied through ``Projection.apply``.
3. *Swap*: indexes, then ``renameCollection`` over the live collection (atomic). The live
   collection served queries until then; events the live actors applied to it in the last
   moments are caught up again on the swapped-in collection right after (idempotent).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from messages import Event, registry
from readstore.cache import bump_version
from readstore.db import Document
from readstore.eventlog import Commit, commits
from readstore.mongo import from_mongo
from readstore.projection import Projection

REBUILDS = "projection_rebuilds"
DUPLICATE_KEY = 11000


@dataclass
class Progress:
    """Where a rebuild stands; ``rate`` in events per second over this run."""

    phase: str
    events: int = 0
    commits: int = 0
    total_commits: int = 0
    started: float = field(default_factory=time.monotonic)
    resumed_from: str | None = None

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        per_commit = (time.monotonic() - self.started) / self.commits if self.commits else None
        if per_commit is None:
            return None
        return max(self.total_commits - self.commits, 0) * per_commit


@dataclass
class Outcome:
    projection: str
    collection: str
    swapped: bool
    events: int
    seconds: float
    resumed: bool
    caught_up: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


Report = Callable[[Progress], None]


def _ignore(_: Progress) -> None:
    pass


def next_update(projection: Projection, event: Event) -> UpdateOne:
    """The conditional update that applies ``event`` right after its predecessor, as
    ``Projection._apply_next`` does one at a time."""
    doc_id, path = projection.locate(event)
    version = event.stream_version or 0
    update = projection.change(event) if isinstance(event, projection.handles) else {}
    update = {**update, "$set": {**update.get("$set", {}), path: version}}
    if version == 1:
        return UpdateOne({"_id": doc_id, path: {"$exists": False}}, update, upsert=True)
    return UpdateOne({"_id": doc_id, path: version - 1}, update)


def write_in_order(projection: Projection, operations: list[UpdateOne]) -> None:
    """Run ``operations`` in order; one that meets an existing position (a duplicate key on
    its upsert) was applied already, so it is skipped and the rest continue."""
    start = 0
    while start < len(operations):
        try:
            projection.collection.bulk_write(operations[start:], ordered=True)
            return
        except BulkWriteError as exc:
            first = exc.details["writeErrors"][0]
            if first["code"] != DUPLICATE_KEY:
                raise
            start += first["index"] + 1


def followed_streams(projection: Projection, batch: Iterable[Commit]) -> Iterator[list[Commit]]:
    """The commits of ``batch`` grouped by stream, only the streams ``projection`` follows."""
    stream: list[Commit] = []
    for commit in batch:
        if stream and stream[0].stream_id != commit.stream_id:
            if _follows(projection, stream):
                yield stream
            stream = []
        stream.append(commit)
    if stream and _follows(projection, stream):
        yield stream


def handled_types(projection_type: type[Projection]) -> frozenset[str]:
    """The registered type names ``projection_type`` handles (subclasses included)."""
    return frozenset(
        name for name, cls in registry.types().items() if issubclass(cls, projection_type.handles)
    )


def _decoded_if_followed(stream: list[Document], handled: frozenset[str]) -> list[Commit]:
    if not any(raw.get("type") in handled for doc in stream for raw in doc["events"]):
        return []
    return [Commit.from_document(doc) for doc in stream]


def _follows(projection: Projection, stream: list[Commit]) -> bool:
    return any(isinstance(e, projection.handles) for c in stream for e in c.events)


class Rebuild:
    """One rebuild of ``projection_type``: start it or resume it, then run it to the swap."""

    def __init__(
        self,
        database: Database[Document],
        projection_type: type[Projection],
        *,
        batch_size: int = 500,
        margin: timedelta = timedelta(seconds=5),
        dry_run: bool = False,
        report: Report = _ignore,
    ) -> None:
        self.database = database
        self.kind = projection_type
        self.batch_size = batch_size
        self.margin = margin
        self.dry_run = dry_run
        self.report = report
        self.state_id = projection_type.name + (":dry-run" if dry_run else "")
        self.state = self._start_or_resume()
        self.target = projection_type(database, collection=self.state["target"])
        self.live = projection_type(database)

    # -- state -----------------------------------------------------------------------------
    def _start_or_resume(self) -> Document:
        rebuilds = self.database[REBUILDS]
        state = rebuilds.find_one({"_id": self.state_id, "phase": {"$ne": "done"}})
        if state is not None and not self.dry_run:
            return state
        kind = "dryrun" if self.dry_run else "rebuild"
        state = {
            "_id": self.state_id,
            "projection": self.kind.name,
            "target": f"{self.kind.collection_name}_{kind}_{uuid.uuid4().hex[:8]}",
            "phase": "replay",
            "started_at": datetime.now(UTC),
            "last_commit": "",
            "events": 0,
        }
        self.database.drop_collection(state["target"])
        self.database.create_collection(state["target"])
        rebuilds.replace_one({"_id": self.state_id}, state, upsert=True)
        return state

    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        self.database[REBUILDS].update_one({"_id": self.state_id}, {"$set": changes})

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> Outcome:
        began = time.monotonic()
        resumed = bool(self.state["last_commit"]) or self.state["phase"] != "replay"
        if self.state["phase"] == "replay":
            self._replay()
            self._save(phase="catch-up", since=self.state["started_at"])
        outcome = Outcome(self.kind.name, self.target.collection.name, False, 0, 0.0, resumed)
        if self.state["phase"] == "catch-up":
            pass_start = datetime.now(UTC)
            outcome.caught_up += self._catch_up(self.target, self.state["since"])
            self._save(phase="swapping", since=pass_start)
        if self.dry_run:
            outcome.differences = diff(self.live, self.target)
            self.database.drop_collection(self.target.collection.name)
            self.database[REBUILDS].delete_one({"_id": self.state_id})
        else:
            outcome.caught_up += self._swap()
            outcome.swapped = True
        outcome.events = int(self.state["events"]) + outcome.caught_up
        outcome.seconds = time.monotonic() - began
        return outcome

    def _replay(self) -> None:
        progress = Progress(
            "replay",
            commits=int(self.state.get("commits", 0)),
            total_commits=commits(self.database).estimated_document_count(),
            resumed_from=self.state["last_commit"] or None,
        )
        for batch, scanned in self._batches(self.state["last_commit"]):
            operations = [next_update(self.target, e) for c in batch for e in c.events]
            write_in_order(self.target, operations)
            progress.events += len(operations)
            progress.commits += scanned
            self._save(
                last_commit=batch[-1].id,
                events=self.state["events"] + len(operations),
                commits=progress.commits,
            )
            self.report(progress)

    def _batches(self, after: str) -> Iterator[tuple[list[Commit], int]]:
        """Whole followed streams, about ``batch_size`` commits at a time, after ``after``;
        with each batch, how many commits were read for it (followed or not). Streams the
        projection does not follow are skipped undecoded."""
        cursor = commits(self.database).find({"_id": {"$gt": after}}).sort("_id", 1)
        handled = handled_types(self.kind)
        batch: list[Commit] = []
        pending: list[Document] = []  # the current stream, which may continue in the next read
        scanned = 0
        for doc in cursor.batch_size(self.batch_size):
            if pending and pending[0]["stream_id"] != doc["stream_id"]:
                batch += _decoded_if_followed(pending, handled)
                pending = []
                if len(batch) >= self.batch_size:
                    yield batch, scanned
                    batch, scanned = [], 0
            pending.append(doc)
            scanned += 1
        batch += _decoded_if_followed(pending, handled)
        if batch:
            yield batch, scanned

    def _catch_up(self, projection: Projection, since: datetime) -> int:
        """Apply every commit committed since ``since`` (minus the margin); how many events."""
        query = {"committed_at": {"$gte": since - self.margin}}
        cursor = commits(self.database).find(query).sort("_id", 1)
        applied = 0
        for stream in followed_streams(projection, (Commit.from_document(d) for d in cursor)):
            for event in (e for c in stream for e in c.events):
                applied += projection.apply(event)
        return applied

    def _swap(self) -> int:
        """Catch up once more, rename over the live collection, catch up what raced the swap.

        ``since`` always says from when the next pass must read; a crash anywhere in here
        resumes correctly (the rename happened iff the rebuilt collection is gone)."""
        target = self.target.collection.name
        caught_up = 0
        if target in self.database.list_collection_names():
            final_start = datetime.now(UTC)
            caught_up += self._catch_up(self.target, self.state["since"])
            self._save(since=final_start)
            self.target.indexes()
            self.database.client.admin.command(
                "renameCollection",
                f"{self.database.name}.{target}",
                to=f"{self.database.name}.{self.kind.collection_name}",
                dropTarget=True,
            )
        bump_version(self.database, self.kind.name)
        caught_up += self._catch_up(self.live, self.state["since"])
        self._save(phase="done", finished_at=datetime.now(UTC))
        return caught_up


def diff(live: Projection, rebuilt: Projection, limit: int = 50) -> list[str]:
    """Documents that differ between the live and the rebuilt model (at most ``limit``)."""
    have = {doc["_id"]: from_mongo(doc) for doc in live.collection.find()}
    differences: list[str] = []
    for doc in rebuilt.collection.find():
        want = from_mongo(doc)
        got = have.pop(doc["_id"], None)
        if got is None:
            differences.append(f"{doc['_id']}: missing from the live model")
        elif got != want:
            keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            differences.append(f"{doc['_id']}: differs in {', '.join(keys)}")
    differences += [f"{doc_id}: only in the live model" for doc_id in have]
    return differences[:limit] + (
        [f"… and {len(differences) - limit} more"] if len(differences) > limit else []
    )


def rebuild_states(database: Database[Document]) -> dict[str, Document]:
    """The latest rebuild of each projection (running, or done)."""
    return {doc["_id"]: doc for doc in database[REBUILDS].find()}
