"""The dead-letter summary (groups, counts by queue) and the windowed listing agree with the
entries themselves, through recording, replaying, archiving and purging."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database

from readstore.db import Document
from workers.deadletters import replay as replaying
from workers.deadletters.publisher import Batch
from workers.deadletters.selector import Selector
from workers.deadletters.store import DEAD, DeadLetterStore
from workers.deadletters.transitions import placed
from workers.workloads.bench_dlq import failures


def seeded(
    database: Database[Document], count: int, queue: str
) -> tuple[DeadLetterStore, list[str]]:
    """A store holding ``count`` dead letters of ``queue``, recorded in one call; their ids."""
    store = DeadLetterStore(database)
    store.indexes()
    chosen = list(failures(count, queue))
    store.record_many(chosen, copy_in_xq=False)
    return store, [f.key for f in chosen]


def as_compared(groups: list[Document]) -> list[tuple[str, int, list[str]]]:
    return sorted((g["_id"], g["count"], sorted(g["queues"])) for g in groups)


def test_summary_counts_equal_the_entries_through_every_change(
    database: Database[Document],
) -> None:
    # Given dead letters on two queues, some failing twice
    store = DeadLetterStore(database)
    store.indexes()
    first = list(failures(40, "a.orders.commands"))
    store.record_many(first, copy_in_xq=False)
    store.record_many(list(failures(20, "a.customers.commands")), copy_in_xq=False)
    store.record_many(first[:5], copy_in_xq=True)
    # When some are replayed, some archived, some purged, and one fails again after replay
    ids = [f.key for f in first]
    store.mark(ids[:10], "replayed", {"event": "replayed"})
    store.mark(ids[10:15], "archived", {"event": "archived"})
    store.purge(ids[15:20])
    store.record(first[0], copy_in_xq=False)
    # Then the summary's groups and queue counts equal the entries', in every state
    for state in (DEAD, "replayed", "archived"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))
    assert store.counts_by_queue() == {"a.orders.commands": 21, "a.customers.commands": 20}
    assert store.count(Selector(queue="a.orders.commands")) == 21


def test_windowed_listing_is_the_newest_first_page(database: Database[Document]) -> None:
    # Given failures spread unevenly in time: a burst, then a few far older ones
    store = DeadLetterStore(database)
    store.indexes()
    store.record_many(failures(60, "b.orders.commands"), copy_in_xq=False)
    old = list(failures(5, "b.orders.commands"))
    long_ago = datetime.now(UTC) - timedelta(days=30)
    store.record_many(
        [type(f)(**{**vars(f), "failed_at": long_ago, "first_failed_at": long_ago}) for f in old],
        copy_in_xq=False,
    )
    everything = list(store.entries.find({"state": DEAD}).sort("last_failed_at", -1))
    # When pages are listed, all at once, by group and the next page
    page = store.find(Selector(), 50)
    rest = store.find(Selector(before=page[-1]["last_failed_at"]), 50)
    group = everything[0]["group"]
    by_group = store.find(Selector(group=group), 100)
    # Then each is exactly what sorting every entry gives
    assert [d["_id"] for d in page] == [d["_id"] for d in everything[:50]]
    assert [d["_id"] for d in rest] == [d["_id"] for d in everything[50:]]
    assert [d["_id"] for d in by_group] == [d["_id"] for d in everything if d["group"] == group]


def test_two_operators_archiving_the_same_entries_count_them_once(
    database: Database[Document],
) -> None:
    # Given 30 dead letters that two operators have both just read
    store, ids = seeded(database, 30, "c.orders.commands")
    seen = placed(store, ids)
    # When both archive them, each acting on what it read
    for who in ("ops-1", "ops-2"):
        store.mark(ids, "archived", {"event": "archived", "by": who}, before=seen)
    # Then every entry is counted once, as archived
    for state in (DEAD, "archived"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))
    assert store.counts_by_queue("archived") == {"c.orders.commands": 30}


class Crash(BaseException):
    """The replaying process dies (not an error it could handle)."""


class JournalledSender:
    """A publisher keeping its journal in memory; it can die right after a commit."""

    def __init__(self) -> None:
        self.markers: list[Batch] = []
        self.sent: list[str] = []
        self.crash_after_commit = False

    def batch(self, messages: list[Any], batch: Batch, deadline: float) -> None:
        self.sent += [m.message_id for m in messages]
        self.markers.append(batch)
        if self.crash_after_commit:
            raise Crash

    def journal(self) -> tuple[list[Batch], Callable[[], None]]:
        return list(self.markers), self.markers.clear


def test_replay_interrupted_after_its_commit_is_settled_into_the_summary(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 20 dead letters and a replay that dies once its first batch is committed
    store, ids = seeded(database, 20, "d.orders.commands")
    sender = JournalledSender()

    @contextmanager
    def journalled(_: Any) -> Iterator[JournalledSender]:
        yield sender

    monkeypatch.setattr(replaying, "publisher", journalled)
    sender.crash_after_commit = True
    with pytest.raises(Crash):
        replaying.replay(ids, "ops", broker=StubBroker(), store=store, batch=8)
    # When the next replay settles what the first left and replays the rest
    sender.crash_after_commit = False
    report = replaying.replay(ids, "ops", broker=StubBroker(), store=store)
    # Then each message was sent once, and the summary equals the entries in every state
    assert sorted(sender.sent) == sorted(ids)
    assert report.settled["replayed"] == 8
    for state in (DEAD, "replaying", "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))


def test_a_batch_recorded_at_once_is_listed_to_its_oldest_entry(
    database: Database[Document],
) -> None:
    # Given 30 failures recorded in one call, 1 ms apart
    store, _ = seeded(database, 30, "f.orders.commands")
    # When the queue's dead letters are listed a page at a time
    listed: list[Document] = []
    while page := store.find(Selector(queue="f.orders.commands", before=_oldest(listed)), 7):
        listed += page
    # Then every one is listed, newest first
    assert len(listed) == 30
    assert [d["last_failed_at"] for d in listed] == sorted(
        (d["last_failed_at"] for d in listed), reverse=True
    )


def _oldest(listed: list[Document]) -> datetime | None:
    return listed[-1]["last_failed_at"] if listed else None


def test_a_selection_is_replayed_page_by_page_each_entry_once(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 25 dead letters of one queue, six failing at the same moment, and 10 of another
    store, ids = seeded(database, 25, "g.orders.commands")
    same = (store.entries.find_one({"_id": ids[9]}) or {})["last_failed_at"]
    store.entries.update_many({"_id": {"$in": ids[4:10]}}, {"$set": {"last_failed_at": same}})
    store.record_many(failures(10, "g.customers.commands"), copy_in_xq=False)
    sender = JournalledSender()

    @contextmanager
    def journalled(_: Any) -> Iterator[JournalledSender]:
        yield sender

    monkeypatch.setattr(replaying, "publisher", journalled)
    # When the queue's dead letters are replayed, four at a time
    chosen = Selector(queue="g.orders.commands")
    report = replaying.replay_selected(chosen, "ops", broker=StubBroker(), store=store, batch=4)
    # Then each was sent once, the other queue's are still dead, and the counts agree
    assert sorted(sender.sent) == sorted(ids) == sorted(report.replayed)
    assert store.counts_by_queue() == {"g.customers.commands": 10}
    for state in (DEAD, "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))
