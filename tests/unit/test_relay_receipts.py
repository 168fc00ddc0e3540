"""The relay re-sends what no receipt names past its grace, moves its watermark forward only,
and reads commits stored before receipts by their ``dispatched`` mark."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from messages.customers import RegisterCustomer
from readstore.customers import get_customer_profile
from readstore.db import Document
from readstore.eventlog import Commit
from tests.support import register_customer, settle
from workers.ops import status as ops
from workers.runtime.settings import Settings
from workers.write import commands, outbox, receipts
from workers.write.eventstore import EventStore
from workers.write.writebehind import WRITE_BEHIND

GRACE = timedelta(seconds=0.5)


def committed(customer: RegisterCustomer, monkeypatch: pytest.MonkeyPatch, sent: bool) -> str:
    """The commit of ``customer``'s registration; ``sent``: dispatched and receipted, else
    stranded as by a crash between the commit and the send."""
    if not sent:
        monkeypatch.setattr(commands, "dispatch", lambda commit, store: None)
    result = commands.execute(customer, EventStore())
    monkeypatch.undo()
    WRITE_BEHIND.flush()
    return f"{result.token.stream_id}@{1:010d}"


def resent_by(relays: list[outbox.Relay], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commits ``relays`` dispatch again, each run once, side by side."""
    resent: list[str] = []
    real = outbox.dispatch

    def recording(commit: Commit, store: EventStore) -> None:
        resent.append(commit.id)
        real(commit, store)

    monkeypatch.setattr(outbox, "dispatch", recording)
    threads = [threading.Thread(target=relay.run_once) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    monkeypatch.undo()
    return resent


def test_relay_resends_a_commit_without_a_receipt_and_not_one_with_a_receipt(
    stub_broker: StubBroker,
    stub_worker: Worker,
    database: Database[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a commit stranded by a crash before its send, and one sent and receipted
    lost, found = register_customer(), register_customer()
    lost_id = committed(lost, monkeypatch, sent=False)
    committed(found, monkeypatch, sent=True)
    settle(stub_broker, stub_worker)
    assert get_customer_profile(lost.customer_id).value is None
    # When the relay runs past the grace
    time.sleep(GRACE.total_seconds() + 0.1)
    resent = resent_by([outbox.Relay(EventStore(), GRACE)], monkeypatch)
    settle(stub_broker, stub_worker)
    # Then only the stranded one went out again, and now it is receipted
    assert resent == [lost_id]
    assert get_customer_profile(lost.customer_id).value is not None
    assert EventStore().count_undispatched() == 0
    assert resent_by([outbox.Relay(EventStore(), GRACE)], monkeypatch) == []


def test_relay_leaves_a_commit_within_its_grace(
    stub_broker: StubBroker, database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a commit stranded a moment ago
    committed(register_customer(), monkeypatch, sent=False)
    # When the relay runs within the grace
    resent = resent_by([outbox.Relay(EventStore(), timedelta(minutes=1))], monkeypatch)
    # Then it waits, and its watermark stays before the commit
    assert resent == []
    assert receipts.watermark(database) < datetime.now(UTC) - timedelta(minutes=1)


def test_watermark_advances_and_receipts_far_behind_it_are_deleted(
    stub_broker: StubBroker, database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a receipt a day old, and two commits past the grace, one receipted
    old = {"_id": "old", "at": datetime.now(UTC) - timedelta(days=1), "commits": ["x@1"]}
    database[receipts.RECEIPTS].insert_one(old)
    committed(register_customer(), monkeypatch, sent=False)
    last = committed(register_customer(), monkeypatch, sent=True)
    time.sleep(GRACE.total_seconds() + 0.1)
    # When the relay runs
    outbox.Relay(EventStore(), GRACE).run_once()
    # Then the watermark is the last commit it examined, and the old receipt is gone
    doc = database["commits"].find_one({"_id": last})
    assert doc is not None and receipts.watermark(database) == doc["committed_at"]
    assert database[receipts.RECEIPTS].find_one({"_id": "old"}) is None
    assert database[receipts.RECEIPTS].count_documents({}) == 2


def test_two_relays_at_once_resend_a_lost_commit_and_keep_the_watermark_forward(
    stub_broker: StubBroker, database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stranded commit past the grace
    lost = committed(register_customer(), monkeypatch, sent=False)
    time.sleep(GRACE.total_seconds() + 0.1)
    # When two relays run at once
    resent = resent_by([outbox.Relay(EventStore(), GRACE) for _ in range(2)], monkeypatch)
    # Then it went out at least once (consumers drop the second), and the relays find no more
    assert set(resent) == {lost} and len(resent) <= 2
    assert resent_by([outbox.Relay(EventStore(), GRACE)], monkeypatch) == []
    # And the watermark only moves forward
    mark = receipts.watermark(database)
    receipts.advance(database, mark - timedelta(hours=1))
    assert receipts.watermark(database) == mark


def test_relay_reads_commits_stored_before_receipts_by_their_dispatched_mark(
    stub_broker: StubBroker, database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two commits the old code stored (no receipts): one marked dispatched, one not
    done = committed(register_customer(), monkeypatch, sent=False)
    stranded = committed(register_customer(), monkeypatch, sent=False)
    database["commits"].update_one({"_id": done}, {"$set": {"dispatched": True}})
    database["commits"].update_many(
        {}, {"$set": {"committed_at": datetime.now(UTC) - timedelta(days=30)}}
    )
    # When the new relay runs, its watermark at the beginning of time
    resent = resent_by([outbox.Relay(EventStore(), GRACE)], monkeypatch)
    # Then only the unmarked one is re-sent
    assert resent == [stranded]


def test_status_counts_commits_past_the_watermark_that_no_receipt_names(
    stub_broker: StubBroker,
    database: Database[Document],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.ops.status import stale_commit

    # Given a receipted commit, and a stranded one after it
    committed(register_customer(), monkeypatch, sent=True)
    stranded = committed(register_customer(), monkeypatch, sent=False)
    # When status looks, well after the relay's grace
    later = datetime.now(UTC) + timedelta(minutes=5)
    # Then only the stranded one is undispatched, and it is the stale one
    assert EventStore().count_undispatched() == 1
    stale = stale_commit(database, settings, now=later)
    assert stale is not None and stale["commit"] == stranded


def test_relay_pages_read_every_commit_once_across_instants_shared_by_many(
    database: Database[Document],
) -> None:
    # Given eleven commits, seven of them stored within the same millisecond, one parked
    at = datetime(2026, 1, 1, tzinfo=UTC)
    instants = (
        [at, at + timedelta(seconds=1)]
        + [at + timedelta(seconds=2)] * 7
        + [at + timedelta(seconds=3)] * 2
    )
    database["commits"].insert_many(
        {"_id": f"c{i:02d}", "dispatched": False, "committed_at": t} for i, t in enumerate(instants)
    )
    database["commits"].update_one({"_id": "c03"}, {"$set": {"parked": {"at": at}}})
    # When they are read in pages of three
    pages = list(receipts.past(database, receipts.BEGINNING, at + timedelta(days=1), 3))
    # Then each unparked commit comes once, and the instant read through never goes back
    ids = [i for page, _ in pages for i, _ in page]
    assert sorted(ids) == [f"c{i:02d}" for i in range(11) if i != 3] and len(set(ids)) == len(ids)
    examined = [e for _, e in pages if e is not None]
    assert examined == sorted(examined) and examined[-1] == instants[-1]


def test_a_command_delivered_again_sends_its_commits_events_again(
    stub_broker: StubBroker, database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a command committed and sent, its receipt written
    customer = register_customer()
    first = committed(customer, monkeypatch, sent=True)
    # When the same command is delivered again (as after a crash between commit and send)
    resent: list[str] = []
    real = commands.dispatch
    monkeypatch.setattr(commands, "dispatch", lambda c, s: (resent.append(c.id), real(c, s)))
    result = commands.execute(customer, EventStore())
    # Then it commits nothing new and sends the commit's events again, receipt or not
    assert result.duplicate and resent == [first]
    assert database["commits"].count_documents({}) == 1


class Reads(monitoring.CommandListener):
    """Documents each find and getMore returned, per collection."""

    def __init__(self) -> None:
        self.docs: dict[str, int] = {}
        self._names: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command.get("find") or event.command.get("collection")
        self._names[event.request_id] = str(name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if isinstance(event.reply, dict) else None
        if cursor is None:
            return
        batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
        name = self._names.pop(event.request_id, "")
        self.docs[name] = self.docs.get(name, 0) + len(batch)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_counting_undispatched_commits_reads_each_receipt_once_and_stops_at_its_limit(
    mongo_url: str, database: Database[Document]
) -> None:
    # Given 3,000 commits past the watermark (no relay ran), every one receipted
    at = datetime.now(UTC) - timedelta(minutes=5)
    ids = [f"s-{i}@0000000001" for i in range(3000)]
    docs = [
        {"_id": i, "committed_at": at + timedelta(milliseconds=n), "dispatched": False}
        for n, i in enumerate(ids)
    ]
    database.commits.insert_many(docs)
    receipts.receipts(database).insert_many(
        [receipts.receipt(ids[k : k + 50]) for k in range(0, 3000, 50)]
    )
    reads = Reads()
    client: MongoClient[Document] = MongoClient(mongo_url, tz_aware=True, event_listeners=[reads])
    try:
        store = EventStore(client[database.name])
        # When they are counted, in pages of 500, and then with a limit
        assert sum(1 for _ in receipts.pending(store.database, datetime.now(UTC), 500)) == 0
        # Then each receipt was read once, not once per page
        assert reads.docs[receipts.RECEIPTS] == 60
        # and a count with a limit looks at no more commits than that
        reads.docs.clear()
        assert store.count_undispatched(examine=1000) == 0
        assert reads.docs["commits"] <= 1000
    finally:
        client.close()


def test_status_says_the_relay_is_behind_when_more_commits_wait_than_it_looks_at(
    database: Database[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given more commits past the relay's watermark than status looks at (no relay ran)
    monkeypatch.setattr(ops, "RELAY_BEHIND", 20)
    at = datetime.now(UTC) - timedelta(minutes=5)
    database.commits.insert_many(
        [{"_id": f"s-{n}@0000000001", "committed_at": at, "dispatched": False} for n in range(25)]
    )
    # When status is read
    figures = ops.relay_figures(database, ops.Settings(_env_file=None))
    # Then it counted no further than its limit, and says the relay is behind
    assert figures.undispatched <= 20
    assert figures.behind
    notes = ops.attention(
        ops.Status([], {}, {}, figures.undispatched, relay_behind=figures.behind), 10
    )
    assert any("past the relay's watermark" in note for note in notes)
