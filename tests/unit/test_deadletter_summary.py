"""The dead-letter summary (groups, counts by queue) and the windowed listing agree with the
entries themselves, through recording, replaying, archiving and purging."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from readstore.db import Document
from tests.support import at_once
from workers.deadletters import replay as replaying
from workers.deadletters.publisher import Batch
from workers.deadletters.selector import Selector
from workers.deadletters.store import DEAD, DeadLetterStore
from workers.deadletters.transitions import placed
from workers.workloads import bench_dlq
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
        self.crash_before_commit = False
        self.lock = threading.Lock()

    def declare(self, queues: Any) -> None:
        pass

    def batch(self, messages: list[Any], batch: Batch, deadline: float) -> None:
        if self.crash_before_commit:
            raise Crash
        with self.lock:
            self.sent += [m.message_id for m in messages]
        self.markers.append(batch)
        if self.crash_after_commit:
            raise Crash

    def journal(self) -> tuple[list[Batch], Callable[[], None]]:
        return list(self.markers), self.markers.clear

    def dies_in(self, replay: Callable[[], object], *, after_commit: bool) -> None:
        """Run ``replay`` (with a lease of 0.2 s) until it dies, before or after the commit of
        its first batch; return once its lease has run out."""
        self.crash_after_commit, self.crash_before_commit = after_commit, not after_commit
        with pytest.raises(Crash):
            replay()
        time.sleep(0.3)
        self.crash_after_commit = self.crash_before_commit = False


def journalled_sender(monkeypatch: pytest.MonkeyPatch) -> JournalledSender:
    """A journalled sender every replay of this test publishes through."""
    sender = JournalledSender()

    @contextmanager
    def journalled(_: Any) -> Iterator[JournalledSender]:
        yield sender

    monkeypatch.setattr(replaying, "publisher", journalled)
    return sender


def test_replay_interrupted_after_its_commit_is_settled_into_the_summary(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 20 dead letters and a replay that dies once its first batch is committed
    store, ids = seeded(database, 20, "d.orders.commands")
    sender = journalled_sender(monkeypatch)
    sender.dies_in(
        lambda: replaying.replay(ids, "ops", broker=StubBroker(), store=store, batch=8, lease=0.2),
        after_commit=True,
    )
    # When the next replay, once the lease ran out, settles what the first left (its first
    # batch sent, the second claimed while the first was sent) and replays the rest
    report = replaying.replay(ids, "ops", broker=StubBroker(), store=store)
    # Then each message was sent once, and the summary equals the entries in every state
    assert sorted(sender.sent) == sorted(ids)
    assert report.settled == {"batches_sent": 1, "replayed": 0, "dead_again": 8}
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
    sender = journalled_sender(monkeypatch)
    # When the queue's dead letters are replayed, four at a time
    chosen = Selector(queue="g.orders.commands")
    report = replaying.replay_selected(chosen, "ops", broker=StubBroker(), store=store, batch=4)
    # Then each was sent once, the other queue's are still dead, and the counts agree
    assert sorted(sender.sent) == sorted(ids) == sorted(report.replayed)
    assert store.counts_by_queue() == {"g.customers.commands": 10}
    for state in (DEAD, "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))


class WritesCounted(monitoring.CommandListener):
    """Counts the entries each write to the dead-letter collection names (one per update
    statement: an update by a filter counts once, however many entries it changes)."""

    def __init__(self) -> None:
        self.statements = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == "dead_letters":
            self.statements += len(event.command.get("updates", ()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_selections_replay_changes_each_page_in_one_write(
    database: Database[Document], mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 60 dead letters of one queue, watched through a client counting writes
    seeded(database, 60, "h.orders.commands")
    writes = WritesCounted()
    client: MongoClient[Document] = MongoClient(mongo_url, event_listeners=[writes])
    store = DeadLetterStore(client[database.name])
    sender = JournalledSender()
    monkeypatch.setattr(replaying, "publisher", lambda _: nullcontext(sender))
    # When the queue is replayed, 20 at a time
    chosen = Selector(queue="h.orders.commands")
    report = replaying.replay_selected(chosen, "ops", broker=StubBroker(), store=store, batch=20)
    client.close()
    # Then each page took one write (three or four pages, where a write per entry would
    # make 60), and every entry was sent once
    assert len(report.replayed) == len(set(sender.sent)) == len(sender.sent) == 60
    assert writes.statements <= 4
    assert DeadLetterStore(database).counts_by_queue("replayed") == {"h.orders.commands": 60}


def test_replay_killed_between_its_claim_and_the_send_loses_nothing(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 30 dead letters and a replay that dies after its claim, before anything is sent
    store, ids = seeded(database, 30, "i.orders.commands")
    sender = JournalledSender()
    monkeypatch.setattr(replaying, "publisher", lambda _: nullcontext(sender))
    chosen = Selector(queue="i.orders.commands")
    sender.dies_in(
        lambda: replaying.replay_selected(
            chosen, "ops", broker=StubBroker(), store=store, lease=0.2
        ),
        after_commit=False,
    )
    # When its lease has run out and the queue is replayed again
    report = replaying.replay_selected(chosen, "ops", broker=StubBroker(), store=store)
    # Then nothing was sent twice or lost, the history says what happened, the counts agree
    assert sorted(sender.sent) == sorted(ids)
    assert report.settled["dead_again"] == 30
    entry = store.get(ids[0]) or {}
    assert [h["event"] for h in entry["history"]] == [
        "failed",
        "replayed",
        "replay_failed",
        "replayed",
    ]
    assert (entry["state"], entry["replays"]) == ("replayed", 1)
    for state in (DEAD, "replaying", "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))


def test_two_replays_racing_over_one_group_send_each_entry_once(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 200 dead letters in four groups, and two operators sharing one broker
    store, ids = seeded(database, 200, "j.orders.commands")
    group = (store.get(ids[0]) or {})["group"]
    in_group = [i for i in ids if (store.get(i) or {})["group"] == group]
    sender = JournalledSender()
    monkeypatch.setattr(replaying, "publisher", lambda _: nullcontext(sender))
    # When both replay that group at the same moment, ten at a time
    reports: list[replaying.ReplayReport] = []

    def operator(name: str) -> None:
        chosen = Selector(group=group)
        reports.append(
            replaying.replay_selected(chosen, name, broker=StubBroker(), store=store, batch=10)
        )

    at_once(operator, ["ops-1", "ops-2"])
    # Then each entry of the group was sent once, by one of them, and the counts agree
    assert sorted(sender.sent) == sorted(in_group)
    assert sorted(reports[0].replayed + reports[1].replayed) == sorted(in_group)
    for state in (DEAD, "replaying", "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))


def test_a_selection_with_bursts_and_gaps_is_replayed_each_entry_once(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 40 dead letters of one queue: 20 failed at one moment, 5 a month before any
    # failure the group counts know of, the rest 1 ms apart
    store, ids = seeded(database, 40, "k.orders.commands")
    same = (store.get(ids[30]) or {})["last_failed_at"]
    store.entries.update_many({"_id": {"$in": ids[10:30]}}, {"$set": {"last_failed_at": same}})
    long_ago = same - timedelta(days=30)
    store.entries.update_many({"_id": {"$in": ids[:5]}}, {"$set": {"last_failed_at": long_ago}})
    sender = JournalledSender()
    monkeypatch.setattr(replaying, "publisher", lambda _: nullcontext(sender))
    # When the queue is replayed, five at a time
    chosen = Selector(queue="k.orders.commands")
    report = replaying.replay_selected(chosen, "ops", broker=StubBroker(), store=store, batch=5)
    # Then each was sent once and the counts agree
    assert sorted(sender.sent) == sorted(ids) == sorted(report.replayed)
    for state in (DEAD, "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))


class SlowJournal(JournalledSender):
    """A journal whose reader holds the markers it took a while before acking them (a
    marker being read is invisible to any other reader)."""

    def journal(self) -> tuple[list[Batch], Callable[[], None]]:
        with self.lock:
            taken, self.markers = self.markers, []
        time.sleep(0.3)
        return taken, lambda: None


def test_two_replays_settling_one_sent_batch_at_once_do_not_undo_it(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a replay that died right after its first batch of 10 was committed
    store, ids = seeded(database, 10, "l.orders.commands")
    sender = SlowJournal()
    monkeypatch.setattr(replaying, "publisher", lambda _: nullcontext(sender))
    sender.dies_in(
        lambda: replaying.replay(ids, "ops", broker=StubBroker(), store=store, lease=0.2),
        after_commit=True,
    )
    # When two operators replay the same entries at once, once its lease has run out
    at_once(lambda name: replaying.replay(ids, name, broker=StubBroker(), store=store), ["a", "b"])
    # Then nothing was sent again: the batch was found sent, not undone
    assert sorted(sender.sent) == sorted(ids)
    assert {(d["state"], d["replays"]) for d in store.entries.find()} == {("replayed", 1)}


def test_entries_an_earlier_replay_left_replaying_are_settled(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given entries an earlier version of the replay left claimed (`replaying`): the batch of
    # four was committed (its marker is in the journal), the batch of three never was
    store, ids = seeded(database, 7, "m.orders.commands")
    store.mark(ids, "replaying", {"event": "claimed"})
    past = datetime.now(UTC) - timedelta(seconds=5)
    for token, chosen in (("sent", ids[:4]), ("lost", ids[4:])):
        owner = {"replay": {"token": token, "until": past}}
        store.entries.update_many({"_id": {"$in": chosen}}, {"$set": owner})
    sender = JournalledSender()
    sender.markers.append(Batch("sent", tuple(ids[:4])))
    monkeypatch.setattr(replaying, "publisher", lambda _: nullcontext(sender))
    # When the next replay runs
    report = replaying.replay(ids[4:], "ops", broker=StubBroker(), store=store)
    # Then the sent batch is replayed, the other dead again and replayed now, counts agree
    assert report.settled == {"batches_sent": 0, "replayed": 4, "dead_again": 3}
    assert sorted(sender.sent) == sorted(ids[4:])
    assert {d["state"] for d in store.entries.find()} == {"replayed"}
    for state in (DEAD, "replaying", "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))


@pytest.mark.parametrize("selection", [False, True], ids=["by id", "by group"])
def test_replay_killed_between_its_claim_and_the_count_is_counted_once_settled(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch, selection: bool
) -> None:
    # Given 12 dead letters and a replay that dies right after it claimed its first batch,
    # before the summary counted the claim
    store, ids = seeded(database, 12, "k.orders.commands")
    sender = journalled_sender(monkeypatch)
    counted = store.summary.moved

    def dies(before: Any, state: Any, **kwargs: Any) -> None:
        if state == "replayed":
            raise Crash
        counted(before, state, **kwargs)

    monkeypatch.setattr(store.summary, "moved", dies)
    group = (store.entries.find_one({"_id": ids[0]}) or {})["group"]

    def first() -> object:
        if selection:
            chosen = Selector(group=group)
            return replaying.replay_selected(
                chosen, "ops", broker=StubBroker(), store=store, batch=8, lease=0.2
            )
        return replaying.replay(ids, "ops", broker=StubBroker(), store=store, batch=8, lease=0.2)

    with pytest.raises(Crash):
        first()
    time.sleep(0.3)
    monkeypatch.setattr(store.summary, "moved", counted)
    # When the next replay settles what the first left, and replays the rest
    replaying.replay(ids, "ops", broker=StubBroker(), store=store)
    # Then every message was sent once, and the summary equals the entries in every state
    assert sorted(sender.sent) == sorted(ids)
    for state in (DEAD, "replayed"):
        assert as_compared(store.groups(state)) == as_compared(store.aggregated_groups(state))


def test_the_bench_tells_how_much_of_a_replay_waited_on_the_store(
    mongo_url: str, database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 30 dead letters, on a client whose store replies the bench times
    waited = bench_dlq.StoreTime()
    client: MongoClient[Document] = MongoClient(
        mongo_url, tz_aware=True, uuidRepresentation="standard", event_listeners=[waited]
    )
    store, _ = seeded(client[database.name], 30, "b.orders.commands")
    journalled_sender(monkeypatch)
    # When the bench measures the listings and a replay of them all
    report = bench_dlq.measure(store, StubBroker(), "b.orders.commands", None, waited)
    client.close()
    # Then it says how long the replay waited on the store, within its time, and how many
    # documents it updated (each entry claimed once, and the summary's rows)
    assert report["replayed"] == 30
    assert 0 < report["replay_store_s"] <= report["replay_s"]
    assert 30 <= report["replay_documents_updated"] <= 40
    assert report["summary_equals_entries"]
