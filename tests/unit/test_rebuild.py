"""Rebuilding a projection: queries keep answering, nothing that arrives meanwhile is lost,
the swapped model equals a recomputation, a killed rebuild resumes, a dry run diffs."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from messages.orders import ConfirmOrder, order_stream
from readstore.analytics import OrderAnalytics, revenue_by_day
from readstore.cache import query_cache
from readstore.customers import CustomerProfiles, get_customer_profile
from readstore.eventlog import iter_commits, stream_version
from readstore.lag import projection_lag
from readstore.rebuild import REBUILDS, Progress, Rebuild
from tests.readside import assert_order_figures_match, recompute, seed_history
from tests.support import place_order, register_customer, settle
from tests.unit.test_versioning import store_v1_customer
from workers.publishing import publish
from workers.subscribers import fulfilment as sagas
from workers.write.eventstore import EventStore


class Killed(Exception):
    """Stands for the process dying mid-rebuild."""


def apply_history(database: Any) -> None:
    """The live model, as the actors would have built it."""
    live = OrderAnalytics(database)
    for commit in iter_commits(database):
        for event in commit.events:
            if isinstance(event, OrderAnalytics.handles):
                live.apply(event)


@pytest.fixture
def no_saga(settings, stub_broker):
    # The orders here are confirmed by hand; the saga would race to fulfil them.
    sagas.configure(settings.model_copy(update={"fulfilment_saga": False}))


def live_traffic(broker: Any, worker: Any, orders: int = 3) -> list[uuid.UUID]:
    """A customer places orders and confirms them, through the pipeline, to the end."""
    customer = register_customer("Live")
    publish(customer)
    settle(broker, worker)
    placed = [place_order(customer.customer_id, ("LIVE", 2, "3.00")) for _ in range(orders)]
    for command in placed:
        publish(command)
    settle(broker, worker)
    for command in placed:
        publish(ConfirmOrder(order_id=command.order_id))
    settle(broker, worker)
    return [command.order_id for command in placed]


def test_rebuild_while_commands_flow_loses_nothing(
    stub_broker, stub_worker, database, monkeypatch, no_saga
):
    # Given a history and its live model
    query_cache.clear()
    seed_history(EventStore(database), orders=150)
    apply_history(database)
    arrived: list[uuid.UUID] = []
    answers: list[Decimal] = []

    def during_replay(progress: Progress) -> None:
        # Commands keep flowing, and the old model keeps answering, mid-replay.
        answers.append(sum((r.revenue for r in revenue_by_day().value), Decimal(0)))
        if len(answers) == 2:
            arrived.extend(live_traffic(stub_broker, stub_worker))

    catch_up = Rebuild._catch_up

    def racing_the_swap(self: Rebuild, projection: Any, since: Any) -> int:
        applied = catch_up(self, projection, since)
        if self.state["phase"] == "swapping" and projection is self.target:
            # Events land on the old collection between the last pass and the rename.
            arrived.extend(live_traffic(stub_broker, stub_worker, orders=2))
        return applied

    monkeypatch.setattr(Rebuild, "_catch_up", racing_the_swap)

    # When the projection is rebuilt
    outcome = Rebuild(database, OrderAnalytics, batch_size=40, report=during_replay).run()

    # Then queries answered throughout, and the swapped model equals a recomputation
    assert outcome.swapped
    assert len(answers) > 2
    assert all(a > 0 for a in answers)
    assert_order_figures_match(recompute(database))
    lag = projection_lag(OrderAnalytics(database))
    assert lag.behind == 0
    model = database[OrderAnalytics.collection_name]
    for order_id in arrived:
        doc = model.find_one({"_id": str(order_id)})
        assert doc["_version"] == stream_version(database, order_stream(order_id))
        assert doc["status"] == "confirmed"
    assert not [n for n in database.list_collection_names() if "_rebuild_" in n]


def test_a_killed_rebuild_resumes_where_it_stopped(database):
    # Given a rebuild killed after its second batch
    query_cache.clear()
    seed_history(EventStore(database), orders=120)
    batches: list[int] = []

    def die_on_second_batch(progress: Progress) -> None:
        batches.append(progress.events)
        if len(batches) == 2:
            raise Killed

    with pytest.raises(Killed):
        Rebuild(database, OrderAnalytics, batch_size=30, report=die_on_second_batch).run()
    stopped = database[REBUILDS].find_one({"_id": OrderAnalytics.name})
    assert stopped["phase"] == "replay"

    # When it is run again
    progress: list[Progress] = []
    outcome = Rebuild(database, OrderAnalytics, batch_size=30, report=progress.append).run()

    # Then it resumed after the last saved commit, and the model equals a recomputation
    assert outcome.resumed
    assert outcome.collection == stopped["target"]
    assert progress[0].resumed_from == stopped["last_commit"]
    assert progress[-1].events < outcome.events
    assert_order_figures_match(recompute(database))


def test_a_dry_run_reports_differences_and_swaps_nothing(database):
    # Given a live model with one document corrupted
    query_cache.clear()
    seed_history(EventStore(database), orders=20)
    apply_history(database)
    model = database[OrderAnalytics.collection_name]
    victim = model.find_one({"status": "confirmed"})
    model.update_one({"_id": victim["_id"]}, {"$set": {"status": "lost"}})

    # When a dry run compares a rebuilt model with it
    outcome = Rebuild(database, OrderAnalytics, dry_run=True).run()

    # Then it names the document, and the live model is untouched
    assert not outcome.swapped
    assert outcome.differences == [f"{victim['_id']}: differs in status"]
    assert model.find_one({"_id": victim["_id"]})["status"] == "lost"
    assert not [n for n in database.list_collection_names() if "_dryrun_" in n]


def test_a_new_projection_is_built_from_history(database):
    # Given a history no projection has seen yet
    query_cache.clear()
    seed_history(EventStore(database), orders=30)
    assert OrderAnalytics.collection_name not in database.list_collection_names()

    # When it is "rebuilt"
    Rebuild(database, OrderAnalytics).run()

    # Then it holds the whole history
    assert_order_figures_match(recompute(database))


def test_a_rebuild_reads_v1_events_as_v2(database):
    # Given a customer registered as v1 before the upgrade
    customer_id = uuid.uuid4()
    store_v1_customer(database, customer_id)

    # When the customer profiles are rebuilt
    Rebuild(database, CustomerProfiles).run()

    # Then the rebuilt profile carries the upcast name
    profile = get_customer_profile(customer_id).value
    assert profile is not None
    assert profile.name == "Old Timer"
