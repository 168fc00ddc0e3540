"""``sagaworks demo`` beside a live deployment with the same settings leaves it untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pika
from dramatiq import Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pymongo.database import Database

from readstore.customers import get_customer_profile
from tests.conftest import AMQP_URL
from tests.support import register_customer, settle
from workers.publishing import publish
from workers.runtime.broker import BASE_QUEUES
from workers.runtime.settings import Settings
from workers.write.writebehind import WRITE_BEHIND

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")


def queues_and_consumers(prefix: str) -> dict[str, int | None]:
    """Each of the deployment's queues: its consumer count, or ``None`` if it is gone."""
    found: dict[str, int | None] = {}
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    for name in sorted({prefix + base for base in BASE_QUEUES.values()}):
        try:
            found[name] = channel.queue_declare(name, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            found[name], channel = None, connection.channel()
    connection.close()
    return found


def contents(database: Database[Any]) -> dict[str, int]:
    return {name: database[name].count_documents({}) for name in database.list_collection_names()}


def test_demo_beside_a_live_worker_on_the_same_settings_leaves_the_deployment_untouched(
    rabbitmq_broker: RabbitmqBroker,
    rabbitmq_worker: Worker,
    settings: Settings,
    database: Database[Any],
) -> None:
    # Given a live deployment: a worker consuming its queues, and data in its database
    publish(register_customer()).wait(10)
    settle(rabbitmq_broker, rabbitmq_worker)
    WRITE_BEHIND.flush()  # the dispatch receipt too
    queues_before, data_before = queues_and_consumers(settings.queue_prefix), contents(database)
    assert all(queues_before.values())

    # When the demo runs with the deployment's very settings
    env = {
        **os.environ,
        "SAGAWORKS_AMQP_URL": AMQP_URL,
        "SAGAWORKS_MONGODB_URL": settings.mongodb() or "",
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
    }
    run = subprocess.run(
        [SAGAWORKS, "demo", "--orders", "6", "--customers", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    summary = json.loads(run.stdout) if run.stdout.strip() else {}
    if summary.get("database", settings.mongodb_db) != settings.mongodb_db:
        database.client.drop_database(summary["database"])

    # Then it ran on queues and a database of its own, which it printed
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"queues {settings.queue_prefix}demo-" in run.stderr
    assert summary["database"].startswith(f"{settings.mongodb_db}_demo_")
    # and the deployment's queues, consumers and data are as they were, and it still serves
    assert queues_and_consumers(settings.queue_prefix) == queues_before
    assert contents(database) == data_before
    customer = register_customer("After")
    publish(customer).wait(10)
    settle(rabbitmq_broker, rabbitmq_worker)
    assert get_customer_profile(customer.customer_id).value is not None
