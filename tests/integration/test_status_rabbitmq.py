"""``sagaworks status`` on a fresh deployment, without the management API, with a dead relay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from tests.conftest import AMQP_URL, require_rabbitmq
from workers.boot import load_actor_modules
from workers.ops.status import status
from workers.runtime.settings import Settings

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")
NO_API = "http://127.0.0.1:9/"

pytestmark = pytest.mark.rabbitmq


def test_status_before_any_worker_says_each_queue_is_missing_without_pika_noise(
    settings: Settings, database: Database[Any]
) -> None:
    # Given a deployment whose queues no worker has declared yet, and no management API
    require_rabbitmq()
    env = {
        **os.environ,
        "SAGAWORKS_AMQP_URL": AMQP_URL,
        "SAGAWORKS_MONGODB_URL": settings.mongodb() or "",
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
        "SAGAWORKS_RABBITMQ_MANAGEMENT_URL": NO_API,
    }

    # When an operator asks for the status
    run = subprocess.run(
        [SAGAWORKS, "status"], env=env, capture_output=True, text=True, timeout=120, check=False
    )

    # Then it needs attention, one line per missing queue, says why figures are unknown,
    # and logs nothing from pika
    assert run.returncode == 1, run.stdout + run.stderr
    missing = [line for line in run.stdout.splitlines() if ": missing (no worker" in line]
    assert len(missing) == len({line.split(":")[0] for line in missing}) >= 10
    assert f"{settings.queue_prefix}orders.commands: missing" in run.stdout
    assert "management API is not reachable at http://127.0.0.1:9" in run.stdout
    assert "NOT_FOUND" not in run.stdout + run.stderr
    assert "404" not in run.stderr


def test_status_pages_when_commits_stay_undispatched_past_the_relays_grace(
    settings: Settings, database: Database[Any]
) -> None:
    # Given commits undispatched for a minute (the relay is dead), one of them the oldest
    require_rabbitmq()
    load_actor_modules()
    now = datetime.now(UTC)
    for name, age in (("customer-a@1", 60), ("customer-b@1", 90), ("customer-c@1", 1)):
        database["commits"].insert_one(
            {"_id": name, "dispatched": False, "committed_at": now - timedelta(seconds=age)}
        )

    # When status is measured
    result = status(settings, database)

    # Then it needs attention, naming the oldest stale commit and the relay
    [note] = [a for a in result.attention if a.startswith("outbox:")]
    assert "customer-b@1" in note and "sagaworks relay" in note
    assert json.loads(json.dumps(result.asdict(), default=str))["oldest_stale_commit"][
        "commit"
    ] == ("customer-b@1")
