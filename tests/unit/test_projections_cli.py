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


def test_dry_run_exits_non_zero_on_differences(cli_env, capsys, database):
    # Given a live model that misses everything
    # When a dry run compares
    code, outcome, _ = run(capsys, "projections", "rebuild", "order_analytics", "--dry-run")

    # Then it reports the missing documents and swaps nothing
    assert code == 1
    assert not outcome["swapped"]
    assert outcome["differences"]
    assert database[OrderAnalytics.collection_name].count_documents({}) == 0
    assert not [n for n in database.list_collection_names() if "_dryrun_" in n]


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
