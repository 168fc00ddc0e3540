"""The dead-letter summary (groups, counts by queue) and the windowed listing agree with the
entries themselves, through recording, replaying, archiving and purging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from readstore.db import Document
from workers.deadletters.store import DEAD, DeadLetterStore, Selector
from workers.workloads.bench_dlq import failures


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
