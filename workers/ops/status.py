"""What needs attention: queue depths, dead letters, projection lag and sagas by state.

Queue depths come from RabbitMQ: the ready counts from a passive ``queue_declare`` (a queue
no worker has declared yet is *missing*, which needs attention), the unacknowledged counts
from the management API (``None``, shown as unknown with a one-line note, when it is not
reachable: the plugin is optional). Commits left undispatched past the relay's grace (past its
watermark, and named by no dispatch receipt) mean the relay is down or stuck: that needs
attention, naming the oldest.

Projection lag is *events committed but not yet applied*, measured without a counter on the
hot path as: the projection queue's ready + unacknowledged messages, plus its
delay queue (retries waiting), plus the commits not yet dispatched (each may carry events for
every projection), plus the events held behind a parked stream. Duplicates in flight can make
it an overestimate; it is zero only when the projection has nothing left to apply.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from pymongo.database import Database

from readstore.db import Document
from readstore.lag import projection_lag as measure_lag
from readstore.projection import Projection, parked_streams
from sagas.store import RUNNING, SagaStore
from workers.ops.queues import QueueFigures, management_url, queue_counts, queue_figures
from workers.runtime.settings import Settings
from workers.write import receipts
from workers.write.eventstore import EventStore

SAGAS = "sagas"
#: A running saga this long past its step deadline is stuck (its timeout never ran).
OVERDUE_GRACE = timedelta(minutes=5)
#: Commits (and model positions) per followed stream kind that status reads to check that a
#: projection's lag can be measured at all: a sample, not the store.
LAG_SAMPLE = 50
#: Commits past the relay's watermark that status looks at, at most: a relay that keeps up
#: leaves a few seconds' worth there; more means it is behind or not running.
RELAY_BEHIND = 10_000


@dataclass
class Status:
    queues: list[QueueFigures]
    projections: dict[str, dict[str, Any]]
    sagas: dict[str, int]
    undispatched: int
    overdue_sagas: int = 0
    parked_commits: int = 0
    stale_commit: dict[str, Any] | None = None
    relay_behind: bool = False
    notes: list[str] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)

    def asdict(self) -> dict[str, Any]:
        return {
            "queues": [vars(q) for q in self.queues],
            "projections": self.projections,
            "sagas": self.sagas,
            "overdue_sagas": self.overdue_sagas,
            "undispatched_commits": self.undispatched,
            "parked_commits": self.parked_commits,
            "oldest_stale_commit": self.stale_commit,
            "relay_behind": self.relay_behind,
            "notes": self.notes,
            "dead_letters": sum(q.dead_letters for q in self.queues),
            "attention": self.attention,
            "healthy": not self.attention,
        }


def stale_commit(
    database: Database[Document], settings: Settings, now: datetime | None = None
) -> dict[str, Any] | None:
    """The oldest commit still undispatched well past the relay's grace (relay down or stuck)."""
    now = now or datetime.now(UTC)
    cutoff = now - _allowance(settings)
    return _stale(next(receipts.pending(database, cutoff, examine=RELAY_BEHIND), None), now)


def _allowance(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.relay_grace_seconds + 5 * settings.relay_interval_seconds)


def _stale(oldest: receipts.Entry | None, now: datetime) -> dict[str, Any] | None:
    if oldest is None:
        return None
    commit, committed_at = oldest
    return {
        "commit": commit,
        "committed_at": committed_at.isoformat(),
        "age_seconds": int((now - committed_at).total_seconds()),
    }


def projection_lag(
    settings: Settings, database: Database[Document], queues: list[QueueFigures], undispatched: int
) -> dict[str, dict[str, Any]]:
    from workers.subscribers.projections import PROJECTIONS  # noqa: PLC0415 -- after the actor modules

    by_name = {q.name: q for q in queues}
    lag: dict[str, dict[str, Any]] = {}
    for name, (projection, _) in sorted(PROJECTIONS.items()):
        figures = by_name.get(f"{settings.queue_prefix}projections.{name}") or QueueFigures(name)
        parked = parked_streams(database, projection.collection_name)
        held = sum(max(int(p.get("held_through", 0)) - int(p["version"]) + 1, 1) for p in parked)
        queued = (figures.ready or 0) + (figures.unacked or 0) + (figures.delayed or 0)
        lag[name] = {
            "lag": queued + undispatched + held,
            "queued": queued,
            "parked_streams": len(parked),
            "parked_events": held,
            "exact_queue": figures.unacked is not None,
            "unmeasured": unmeasured(database, projection),
        }
    return lag


def unmeasured(database: Database[Document], projection: type[Projection]) -> str | None:
    """Why the projection's lag against the event store cannot be measured (``None``: it can),
    tried on a sample: status runs it on every look."""
    try:
        measure_lag(projection(database), sample=LAG_SAMPLE)
    except Exception as exc:  # any failure is the finding: reported, not raised
        return f"{type(exc).__name__}: {exc}"
    return None


def sagas_by_state(database: Database[Document]) -> dict[str, int]:
    """Sagas per state, when a saga store exists in this database."""
    if SAGAS not in database.list_collection_names():
        return {}
    return SagaStore(database).count_by_status()


def overdue_query(grace: timedelta = OVERDUE_GRACE) -> Document:
    """Running sagas whose step deadline passed more than ``grace`` ago: stuck, not slow."""
    cutoff = datetime.now(UTC) - grace
    return {"status": {"$in": RUNNING}, "deadline": {"$lt": cutoff}}


def overdue_sagas(database: Database[Document], grace: timedelta = OVERDUE_GRACE) -> int:
    return database[SAGAS].count_documents(overdue_query(grace))


def stuck_sagas(
    database: Database[Document], grace: timedelta = OVERDUE_GRACE, limit: int = 50
) -> list[Document]:
    """The overdue sagas themselves, longest overdue first (without their history)."""
    cursor = database[SAGAS].find(overdue_query(grace), {"history": 0}).sort("deadline", 1)
    return list(cursor.limit(limit))


@dataclass(frozen=True)
class RelayFigures:
    """The outbox as status sees it: commits no receipt names (among the first
    ``RELAY_BEHIND`` past the watermark), the oldest of them past the relay's grace, and
    whether more than that many wait past the watermark (the relay is behind)."""

    undispatched: int
    stale: dict[str, Any] | None
    behind: bool


def relay_figures(database: Database[Document], settings: Settings) -> RelayFigures:
    """One pass over the commits past the watermark: the count and the oldest stale one."""
    now = datetime.now(UTC)
    unsent = list(receipts.pending(database, now, examine=RELAY_BEHIND))
    oldest = unsent[0] if unsent and unsent[0][1] <= now - _allowance(settings) else None
    waiting = database["commits"].count_documents(
        receipts.range_query({"$gt": receipts.watermark(database)}, now), limit=RELAY_BEHIND + 1
    )
    return RelayFigures(len(unsent), _stale(oldest, now), waiting > RELAY_BEHIND)


def status(
    settings: Settings, database: Database[Document], broker: dramatiq.Broker | None = None
) -> Status:
    """The figures; without RabbitMQ configured, the queues of the in-process ``broker``."""
    counts = queue_counts(settings, broker)
    unacked = counts[1]
    queues = queue_figures(settings, database, counts)
    parked = EventStore(database).count_parked()
    relay = relay_figures(database, settings)
    result = Status(
        queues=queues,
        projections=projection_lag(settings, database, queues, relay.undispatched),
        sagas=sagas_by_state(database),
        undispatched=relay.undispatched,
        overdue_sagas=overdue_sagas(database),
        parked_commits=parked,
        stale_commit=relay.stale,
        relay_behind=relay.behind,
    )
    if unacked is None:
        api = urllib.parse.urlsplit(management_url(settings))
        url = f"{api.scheme}://{api.hostname}:{api.port or 15672}"
        result.notes.append(
            f"unacked counts unknown: RabbitMQ's management API is not reachable at {url} "
            "(enable the rabbitmq_management plugin or set SAGAWORKS_RABBITMQ_MANAGEMENT_URL)"
        )
    result.attention = attention(result, settings.max_projection_lag)
    return result


def attention(result: Status, max_lag: int) -> list[str]:
    """What an operator should look at; empty means healthy."""
    notes = [
        f"{q.name}: missing (no worker has declared it yet: is `sagaworks worker` running?)"
        for q in result.queues
        if q.missing
    ]
    notes += [
        f"{q.name}: {q.dead_letters} dead letter(s) in the store"
        for q in result.queues
        if q.dead_letters
    ]
    notes += [f"{q.name}.XQ: {q.xq} message(s) not ingested yet" for q in result.queues if q.xq]
    if result.relay_behind:
        notes.append(
            f"outbox: over {RELAY_BEHIND} commits past the relay's watermark (counted among "
            "the first of them only): is `sagaworks relay` running, and keeping up?"
        )
    if result.stale_commit:
        stale = result.stale_commit
        notes.append(
            f"outbox: commits undispatched past the relay's grace, oldest {stale['commit']} "
            f"({stale['age_seconds']} s old): is `sagaworks relay` running?"
        )
    notes += [
        f"projection {name}: lag {figures['lag']} over {max_lag}"
        for name, figures in result.projections.items()
        if figures["lag"] > max_lag
    ]
    notes += [
        f"projection {name}: lag cannot be measured ({figures['unmeasured']})"
        for name, figures in result.projections.items()
        if figures.get("unmeasured")
    ]
    notes += [
        f"projection {name}: {figures['parked_streams']} parked stream(s)"
        for name, figures in result.projections.items()
        if figures["parked_streams"]
    ]
    if result.parked_commits:
        notes.append(
            f"outbox: {result.parked_commits} commit(s) parked undecodable: "
            "sagaworks dlq list --queue outbox"
        )
    if result.overdue_sagas:
        notes.append(
            f"{result.overdue_sagas} saga(s) past their step deadline: "
            "sagaworks sagas list --older-than 5m"
        )
    return notes
