"""``sagaworks projections list|rebuild`` and ``sagaworks analytics`` against a real store."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from readstore.analytics import OrderAnalytics
from readstore.cache import query_cache
from tests.readside import seed_history
from workers.cli import main
from workers.subscribers.projections import PROJECTIONS
from workers.write.eventstore import EventStore


@pytest.fixture
def cli_env(monkeypatch, mongo_url, database):
    monkeypatch.setenv("SAGAWORKS_MONGODB_URL", mongo_url)
    monkeypatch.setenv("SAGAWORKS_MONGODB_DB", database.name)
    monkeypatch.delenv("SAGAWORKS_AMQP_URL", raising=False)
    query_cache.clear()
    seed_history(EventStore(database), orders=20)
    yield
    # The CLI configured logging onto pytest's captured stderr, which closes with the test.
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


def run(capsys, *argv: str) -> tuple[int, object, str]:
    code = main([*argv, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_list_shows_lag_before_and_none_after_a_rebuild(cli_env, capsys):
    # Given a history no projection has applied
    code, before, _ = run(capsys, "projections", "list")
    analytics = next(p for p in before if p["projection"] == "order_analytics")
    assert code == 0
    assert analytics["lag"] == analytics["committed"] > 0

    # When the projection is rebuilt
    code, outcome, err = run(capsys, "projections", "rebuild", "order_analytics")

    # Then it was swapped in, progress went to stderr, and the lag is gone
    assert code == 0
    assert outcome["swapped"]
    assert "events/s" in err or outcome["events"] < 500
    _, after, _ = run(capsys, "projections", "list")
    analytics = next(p for p in after if p["projection"] == "order_analytics")
    assert (analytics["lag"], analytics["rebuild"]) == (0, "done")


def test_verify_exits_non_zero_on_differences(cli_env, capsys, database):
    # Given a live model that misses everything
    # When verify compares it with the log
    code, report, _ = run(capsys, "projections", "verify", "order_analytics")

    # Then it reports the missing documents and writes nothing
    assert code == 1
    assert not report["consistent"]
    assert report["projections"][0]["different"] > 0
    assert database[OrderAnalytics.collection_name].count_documents({}) == 0


def test_verify_passes_after_a_rebuild(cli_env, capsys):
    # Given every projection rebuilt from the log
    for name in PROJECTIONS:
        assert run(capsys, "projections", "rebuild", name)[0] == 0

    # When verify compares them
    code, report, _ = run(capsys, "projections", "verify")

    # Then each equals a rebuild
    assert code == 0, report
    assert report["consistent"] and report["checked"] > 0


def test_list_measures_every_projection_on_a_store_with_confirmed_orders(cli_env, capsys):
    # Given a store where orders went through reservation and commit (inventory_levels and
    # order_summary follow reservation streams whose events carry no SKU)
    from readstore.db import get_database
    from tests.unit.test_readside_regressions import seed_fulfilled_order
    from workers.write.eventstore import EventStore

    seed_fulfilled_order(EventStore(get_database()))

    # When projections are listed
    code, rows, _ = run(capsys, "projections", "list")

    # Then every projection's lag was measured
    assert code == 0
    assert all(row["lag"] is not None for row in rows), rows


def test_analytics_reports_the_cache_hit_rate(cli_env, capsys):
    # Given a built model
    run(capsys, "projections", "rebuild", "order_analytics")

    # When the dashboard is asked three times
    code, data, _ = run(capsys, "analytics", "--repeat", "3")

    # Then the second and third answers came from the cache
    assert code == 0
    assert data["revenue_by_day"]
    assert data["query_cache"]["hits"] == 8
    assert data["query_cache"]["misses"] == 4


def test_unknown_projection_is_refused(cli_env, capsys):
    # Given / When
    code = main(["projections", "rebuild", "nope"])

    # Then
    assert code == 2
    assert "no projection 'nope'" in capsys.readouterr().err
