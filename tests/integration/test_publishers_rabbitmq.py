"""Foreign publishers learn every command's fate: an ``Outcome`` on their AMQP ``reply_to``."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from messages.customers import RegisterCustomer
from messages.orders import Address, OrderLine, PlaceOrder
from tests.conftest import AMQP_URL
from tests.node import run_node
from workers.rpc import NoQueue, publish_awaiting
from workers.runtime.broker import queue_name
from workers.runtime.routing import COMMAND_ENDPOINTS

ROOT = Path(__file__).resolve().parent.parent.parent
ADDRESS = Address(name="A", street="1 Main St", city="Springfield", postal_code="1", country="US")


@pytest.fixture
def command_queues(rabbitmq_broker: Any, rabbitmq_worker: Any) -> str:
    """The command queues exist (a mandatory publish needs them); the worker consumes them."""
    for endpoint in COMMAND_ENDPOINTS.values():
        rabbitmq_broker.declare_queue(queue_name(endpoint.queue_name), ensure=True)
    return queue_name("")


def _steps(stdout: str) -> dict[str, dict[str, Any]]:
    return {step["step"]: step for step in map(json.loads, stdout.splitlines())}


def _assert_every_outcome(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["register"]["outcome"] == "committed"
    assert steps["register"]["token"].startswith("customer-")
    assert steps["restock"]["outcome"] == "committed"
    assert steps["place"]["outcome"] == "committed"
    assert steps["place again"]["outcome"] == "duplicate"
    assert steps["place again"]["token"] == steps["place"]["token"]
    assert steps["unknown customer"]["outcome"] == "rejected"
    assert "unknown customer" in steps["unknown customer"]["reason"]
    assert steps["money as a number"]["outcome"] == "dead_lettered"
    assert steps["money as a number"]["error"] == "InvalidMessageError"
    assert steps["missing queue"]["outcome"] == "returned"


def test_node_publisher_gets_an_outcome_for_every_command(command_queues: str) -> None:
    # Given a worker on the real RabbitMQ
    # When the amqplib example registers, restocks and places orders, awaiting each answer
    env = {"SAGAWORKS_AMQP_URL": AMQP_URL, "SAGAWORKS_QUEUE_PREFIX": command_queues}
    steps = _steps(run_node("publisher.js", env=env))
    # Then each command was answered with its fate, and the unroutable one came back
    _assert_every_outcome(steps)


def test_plain_pika_publisher_gets_an_outcome_for_every_command(command_queues: str) -> None:
    # Given a worker on the real RabbitMQ
    # When the plain pika example runs (it imports nothing of sagaworks)
    env = {"SAGAWORKS_AMQP_URL": AMQP_URL, "SAGAWORKS_QUEUE_PREFIX": command_queues}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / "publisher.py")],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    # Then each command was answered with its fate, and the unroutable one came back
    _assert_every_outcome(_steps(done.stdout))


def test_sdk_awaits_committed_then_duplicate_with_the_same_token(command_queues: str) -> None:
    # Given a customer registration
    command = RegisterCustomer(customer_id=uuid.uuid4(), name="Ada", email="ada@example.com")
    # When it is published twice with the same message id
    first = publish_awaiting(command, AMQP_URL, 30)
    second = publish_awaiting(command, AMQP_URL, 30)
    # Then the first answer is committed, the second a duplicate of the same commit
    assert first is not None and first.outcome == "committed" and first.appended is True
    assert second is not None and second.outcome == "duplicate"
    assert (second.token, second.version) == (first.token, 1)


def test_sdk_awaits_a_rejection_with_its_reason(command_queues: str) -> None:
    # Given an order for a customer nobody registered
    line = OrderLine(sku="S", quantity=1, unit_price=Decimal("1.00"))
    order = PlaceOrder(
        order_id=uuid.uuid4(), customer_id=uuid.uuid4(), lines=(line,), shipping_address=ADDRESS
    )
    # When it is published and awaited
    outcome = publish_awaiting(order, AMQP_URL, 30)
    # Then the answer is a rejection naming the rule
    assert outcome is not None and outcome.outcome == "rejected"
    assert outcome.error == "CommandRejected" and "unknown customer" in (outcome.reason or "")


def test_sdk_publish_to_a_missing_queue_is_refused_not_lost(rabbitmq_broker: Any) -> None:
    # Given no queue for customer commands under a fresh prefix
    command = RegisterCustomer(customer_id=uuid.uuid4(), name="Ada", email="ada@example.com")
    from workers.runtime import prefix

    saved = prefix.get_prefix()
    prefix.set_prefix(f"nowhere-{uuid.uuid4().hex[:8]}.")
    try:
        # When it is published (mandatory) without declaring the queue
        with pytest.raises(NoQueue):
            publish_awaiting(command, AMQP_URL, 5)
    finally:
        prefix.set_prefix(saved)


def test_a_client_declaring_a_queue_by_the_asyncapi_bindings_matches_the_worker(
    command_queues: str, tmp_path: Path
) -> None:
    # Given the queues as the worker declared them, and the exported AsyncAPI document
    import pika

    from workers.cli import main

    assert main(["schema", "export", "--out", str(tmp_path)]) == 0
    channels = json.loads((tmp_path / "asyncapi.json").read_text())["channels"]
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for name in ("orders_commands", "customers_commands", "inventory_commands"):
            binding = channels[name]["bindings"]["amqp"]["queue"]
            arguments = {
                k: v.replace("{prefix}", command_queues) if isinstance(v, str) else v
                for k, v in binding["x-arguments"].items()
            }
            # When a client declares the queue exactly as the binding says
            channel.queue_declare(
                binding["name"].replace("{prefix}", command_queues),
                durable=binding["durable"],
                exclusive=binding["exclusive"],
                auto_delete=binding["autoDelete"],
                arguments=arguments,
            )
        # Then RabbitMQ accepts it as equivalent (no PRECONDITION_FAILED closed the channel)
        assert channel.is_open
    finally:
        connection.close()


def test_cli_publish_prints_the_outcome_and_exits_by_it(
    command_queues: str, settings: Any, mongo_url: str
) -> None:
    # Given the servers of this test, and a worker
    env = {
        "PATH": "/usr/bin:/bin",
        "SAGAWORKS_AMQP_URL": AMQP_URL,
        "SAGAWORKS_MONGODB_URL": mongo_url,
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": command_queues,
    }
    sagaworks = str(Path(sys.executable).parent / "sagaworks")
    customer = json.dumps({"customer_id": str(uuid.uuid4()), "name": "Ada", "email": "a@b.c"})

    def publish(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sagaworks, "publish", *args, "--json", "--wait", "30"]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    # When a cancellation of an unknown order is published, then a registration
    cancel = json.dumps({"order_id": str(uuid.uuid4()), "reason": "x"})
    rejected = publish("CancelOrder", "--data", cancel)
    registered = publish("RegisterCustomer", "--data", customer)

    # Then each answer is printed as JSON, the exit code says yes or no
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["outcome"] == "committed"
    assert rejected.returncode == 1
    assert json.loads(rejected.stdout)["outcome"] == "rejected"
