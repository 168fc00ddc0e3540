"""`sagaworks bench --saga --no-read-models`: the write side's ceiling, with the projections
sent nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import AMQP_URL, require_rabbitmq

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")


def bench(mongo_url: str | None, *flags: str) -> dict[str, object]:
    """The bench's JSON report; ``mongo_url=None``: on an embedded store of its own."""
    env = {**os.environ, "SAGAWORKS_AMQP_URL": AMQP_URL, "SAGAWORKS_MONGODB_URL": mongo_url or ""}
    if mongo_url is None:
        del env["SAGAWORKS_MONGODB_URL"]
    command = [SAGAWORKS, "bench", "--saga", "--orders", "12", "--rate", "0", "--json", *flags]
    done = subprocess.run(command, env=env, capture_output=True, timeout=240, check=True)
    report: dict[str, object] = json.loads(done.stdout)
    return report


def steps(report: dict[str, object]) -> set[str]:
    rows = report["steps"]
    assert isinstance(rows, list)
    return {row["step"] for row in rows}


def test_without_read_models_the_orders_complete_and_no_projection_is_sent_an_event(
    mongo_url: str,
) -> None:
    require_rabbitmq()
    # When the saga bench runs with and without the read models
    whole = bench(mongo_url)
    alone = bench(mongo_url, "--no-read-models")

    # Then every order was confirmed both times, and only the whole run fed projections
    assert whole["confirmed"] == alone["confirmed"] == 12
    assert whole["read_models"] is True and alone["read_models"] is False
    assert any("project_" in step for step in steps(whole))
    assert not any("project_" in step for step in steps(alone))
    assert any("run_fulfilment_saga" in step for step in steps(alone))

    # And the store's own time is shown per collection: the read models' only in the whole run
    assert {"commits", "sagas", "order_summary"} <= collections(whole)
    assert {"commits", "sagas"} <= collections(alone)
    assert "order_summary" not in collections(alone)


def collections(report: dict[str, object]) -> set[str]:
    rows = report["store_time"]
    assert isinstance(rows, list), rows
    assert all(row["store_ms"] > 0 and row["operations"] > 0 for row in rows)
    return {row["collection"] for row in rows}


def test_on_its_embedded_store_the_bench_shows_the_stores_cpu_per_order() -> None:
    require_rabbitmq()
    # When the bench runs on the embedded store it starts for itself
    report = bench(None)

    # Then it says what CPU the store spent per confirmed order, and how busy it was
    assert report["confirmed"] == 12
    cpu, share = report["store_cpu_ms_per_order"], report["store_cpu_share"]
    assert isinstance(cpu, float) and cpu > 0
    assert isinstance(share, float) and share > 0
    assert "sagas" in collections(report)
