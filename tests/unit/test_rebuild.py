"""Rebuilding a projection: identical to live application whatever the delivery, nothing
applied live meanwhile is lost, queries keep answering, one rebuild at a time."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest

from messages.orders import ConfirmOrder, order_stream
from readstore.analytics import CustomerRegistrations, OrderAnalytics, revenue_by_day
from readstore.cache import VERSION_ID, query_cache
from readstore.customers import CustomerProfiles, get_customer_profile
from readstore.eventlog import iter_commits, stream_version
from readstore.fold import Progress
from readstore.inventory import InventoryLevels
from readstore.lag import projection_lag
from readstore.orders import OrderSummaries
from readstore.projection import Projection
from readstore.rebuild import Rebuild
from readstore.verify import verify_projection
from tests.readside import assert_order_figures_match, recompute, seed_fulfilment, seed_history
from tests.support import place_order, register_customer, settle
from tests.unit.test_versioning import store_v1_customer
from workers.publishing import publish
from workers.subscribers import fulfilment as sagas
from workers.write.eventstore import EventStore

KINDS = (OrderSummaries, CustomerProfiles, InventoryLevels, OrderAnalytics, CustomerRegistrations)


def dump(database: Any, projection: Projection) -> dict[str, list[Any]]:
    """The model's documents, but the query cache's change counter and the fields that
    follow the order events were applied in."""
    hidden = dict.fromkeys(projection.unverified, 0) or None
    return {
        name.removeprefix(projection.collection.name): sorted(
            database[name].find({"_id": {"$ne": VERSION_ID}}, hidden),
            key=lambda d: str(d["_id"]),
        )
        for name in projection.collection_names()
    }


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_live_and_rebuilt_documents_are_identical_after_shuffled_duplicated_delivery(
    database, kind
):
    # Given orders through every stream, delivered live out of order, a third of them twice
    query_cache.clear()
    seed_fulfilment(EventStore(database), orders=10)
    events = [e for c in iter_commits(database) for e in c.events if isinstance(e, kind.handles)]
    rng = random.Random(9)
    deliveries = events + rng.sample(events, len(events) // 3)
    rng.shuffle(deliveries)
    live = kind(database)
    for event in deliveries:
        live.apply(event)
    before = dump(database, live)

    # When the projection is rebuilt from the log
    Rebuild(database, kind, settle_seconds=0).run()

    # Then every document is identical, and verify agrees
    assert dump(database, kind(database)) == before
    assert verify_projection(database, kind).consistent


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


def test_rebuild_while_commands_flow_loses_nothing(stub_broker, stub_worker, database, no_saga):
    # Given a history and its live model
    query_cache.clear()
    seed_history(EventStore(database), orders=60)
    Rebuild(database, OrderAnalytics, settle_seconds=0).run()
    arrived: list[uuid.UUID] = []
    answers: list[Decimal] = []

    def during_fold(progress: Progress) -> None:
        # Commands keep flowing and the old model keeps answering, mid-fold and mid-write.
        answers.append(sum((r.revenue for r in revenue_by_day().value), Decimal(0)))
        if len(answers) in (1, 2):
            arrived.extend(live_traffic(stub_broker, stub_worker, orders=2))

    # When the projection is rebuilt
    outcome = Rebuild(database, OrderAnalytics, report=during_fold).run()
    arrived.extend(live_traffic(stub_broker, stub_worker, orders=1))

    # Then queries answered throughout, and the swapped model equals a recomputation
    assert outcome.swapped and len(answers) >= 2 and all(a > 0 for a in answers)
    assert_order_figures_match(recompute(database))
    assert projection_lag(OrderAnalytics(database)).behind == 0
    model = database[OrderAnalytics.collection_name]
    for order_id in arrived:
        doc = model.find_one({"_id": str(order_id)})
        assert doc["_version"] == stream_version(database, order_stream(order_id))
        assert doc["status"] == "confirmed"
    assert not [n for n in database.list_collection_names() if "__rebuild_" in n]


def test_two_rebuild_processes_at_once_one_is_refused(mongo_url, database):
    # Given a history of orders through fulfilment
    seed_fulfilment(EventStore(database), orders=30)
    env = {**os.environ, "SAGAWORKS_MONGODB_URL": mongo_url, "SAGAWORKS_MONGODB_DB": database.name}
    env.pop("SAGAWORKS_AMQP_URL", None)
    command = [sys.executable, "-m", "workers.cli", "projections", "rebuild", "order_summary"]

    # When two processes rebuild order_summary at once (each waits 20 s for workers to see
    # its lease: whichever takes it holds it while the other starts)
    runs = [
        subprocess.Popen([*command, "--settle", "20"], env=env, stderr=subprocess.PIPE, text=True)
        for _ in "ab"
    ]
    outcomes = [(run.wait(timeout=180), run.stderr.read()) for run in runs]  # type: ignore[union-attr]

    # Then one swapped and the other was refused, naming the holder
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2)
    assert "already running: held by" in refused
    # and the model equals a single rebuild's
    assert verify_projection(database, OrderSummaries).consistent


def test_a_new_projection_is_built_from_history(database):
    # Given a history no projection has seen yet
    query_cache.clear()
    seed_history(EventStore(database), orders=30)
    assert OrderAnalytics.collection_name not in database.list_collection_names()

    # When it is "rebuilt"
    Rebuild(database, OrderAnalytics, settle_seconds=0).run()

    # Then it holds the whole history
    assert_order_figures_match(recompute(database))


def test_a_rebuild_reads_v1_events_as_v2(database):
    # Given a customer registered as v1 before the upgrade
    customer_id = uuid.uuid4()
    store_v1_customer(database, customer_id)

    # When the customer profiles are rebuilt
    Rebuild(database, CustomerProfiles, settle_seconds=0).run()

    # Then the rebuilt profile carries the upcast name
    profile = get_customer_profile(customer_id).value
    assert profile is not None
    assert profile.name == "Old Timer"
