"""``sagaworks publish`` says what became of a command: committed, rejected, or only accepted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from dramatiq import Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from tests.conftest import AMQP_URL
from workers.runtime.settings import Settings

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")


def sagaworks_publish(
    settings: Settings, kind: str, data: dict, wait: float
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SAGAWORKS_AMQP_URL": AMQP_URL,
        "SAGAWORKS_MONGODB_URL": settings.mongodb() or "",
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
    }
    return subprocess.run(
        [SAGAWORKS, "publish", kind, "--data", json.dumps(data), "--wait", str(wait), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def an_order(customer_id: uuid.UUID) -> dict:
    address = {"name": "A", "street": "1 Main St", "city": "X", "postal_code": "1", "country": "US"}
    line = {"sku": "SKU-1", "quantity": 1, "unit_price": "10.00"}
    return {
        "order_id": str(uuid.uuid4()),
        "customer_id": str(customer_id),
        "lines": [line],
        "shipping_address": address,
    }


def test_publish_of_a_command_the_worker_rejects_says_rejected_with_the_reason(
    rabbitmq_broker: RabbitmqBroker, rabbitmq_worker: Worker, settings: Settings
) -> None:
    # Given a running worker, and an order for a customer nobody registered
    order = an_order(uuid.uuid4())

    # When it is published from the command line
    run = sagaworks_publish(settings, "PlaceOrder", order, wait=30)

    # Then the command line says it was rejected, why, and fails
    assert run.returncode == 1, run.stdout + run.stderr[-2000:]
    shown = json.loads(run.stdout)
    assert shown["outcome"] == "rejected"
    assert "unknown customer" in shown["reason"]


def test_publish_of_an_accepted_command_says_committed_and_its_token(
    rabbitmq_broker: RabbitmqBroker, rabbitmq_worker: Worker, settings: Settings
) -> None:
    # Given a running worker
    customer = {"customer_id": str(uuid.uuid4()), "name": "Ada", "email": "ada@example.com"}

    # When a valid command is published from the command line
    run = sagaworks_publish(settings, "RegisterCustomer", customer, wait=30)

    # Then it was committed, with its consistency token
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    shown = json.loads(run.stdout)
    assert (shown["outcome"], shown["token"]) == (
        "committed",
        f"customer-{customer['customer_id']}:1",
    )


def test_publish_with_no_worker_running_says_accepted_not_yet_committed(
    rabbitmq_broker: RabbitmqBroker, settings: Settings
) -> None:
    # Given no worker consuming the queue
    customer = {"customer_id": str(uuid.uuid4()), "name": "Ada", "email": "ada@example.com"}

    # When a command is published with a short wait
    run = sagaworks_publish(settings, "RegisterCustomer", customer, wait=1)

    # Then it is accepted, not committed, and the exit status says so distinctly
    assert run.returncode == 4, run.stdout + run.stderr[-2000:]
    assert json.loads(run.stdout)["outcome"] == "accepted"
