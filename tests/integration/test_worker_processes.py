"""Separate worker processes sharing RabbitMQ and MongoDB; credentials never printed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from messages.orders import ConfirmOrder
from readstore.customers import get_customer_profile
from readstore.orders import OrderSummaries
from tests.conftest import AMQP_URL, delete_queues
from tests.support import place_order, register_customer
from workers.ops.verify import verify_read_models
from workers.publishing import publish
from workers.write import commands
from workers.write.eventstore import EventStore

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")
AMQP_SECRET = f"amqp-{uuid.uuid4().hex[:12]}"
MONGO_SECRET = f"mongo-{uuid.uuid4().hex[:12]}"
AMQP_USER = f"sw-test-{uuid.uuid4().hex[:6]}"
MANAGEMENT = os.environ.get("SAGAWORKS_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672").rstrip(
    "/"
)


def management(method: str, path: str, body: dict | None = None) -> None:
    request = urllib.request.Request(
        f"{MANAGEMENT}/api/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={
            "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
            "content-type": "application/json",
        },
    )
    urllib.request.urlopen(request, timeout=10).close()


def rabbitmqctl(*args: str) -> None:
    """``rabbitmqctl`` on the test's node (``RABBITMQ_NODENAME``, else the local default)."""
    node = ["-n", os.environ["RABBITMQ_NODENAME"]] if os.environ.get("RABBITMQ_NODENAME") else []
    run = subprocess.run(
        [shutil.which("rabbitmqctl") or "rabbitmqctl", "-q", *node, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if run.returncode != 0:
        raise OSError(run.stderr.strip() or run.stdout.strip())


def add_user(user: str, password: str) -> Callable[[], None]:
    """A user on the test broker, through the management API if it is there, else through
    ``rabbitmqctl`` (the plugin is optional); returns how to remove it."""
    try:
        management("PUT", f"users/{user}", {"password": password, "tags": ""})
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        management("PUT", f"permissions/%2F/{user}", everything)
        return lambda: management("DELETE", f"users/{user}")
    except OSError:
        pass
    try:
        rabbitmqctl("add_user", user, password)
        rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(
            "creating a RabbitMQ user needs the management API (rabbitmq-plugins enable "
            f"rabbitmq_management) or rabbitmqctl (root or the rabbitmq user): {exc}"
        )
    return lambda: rabbitmqctl("delete_user", user)


@pytest.fixture
def secret_amqp_url() -> Iterator[str]:
    """A RabbitMQ user with a secret password."""
    remove = add_user(AMQP_USER, AMQP_SECRET)
    broker = urllib.parse.urlsplit(AMQP_URL)
    yield f"amqp://{AMQP_USER}:{AMQP_SECRET}@{broker.hostname}:{broker.port or 5672}/"
    remove()


@pytest.fixture
def secret_mongo_url(mongo_url: str, mongo_client: MongoClient) -> str:
    """The test MongoDB reached as a user with a secret password."""
    user = f"sw-{uuid.uuid4().hex[:6]}"
    mongo_client.admin.command("createUser", user, pwd=MONGO_SECRET, roles=["root"])
    joiner = "&" if "?" in mongo_url else "?"
    return mongo_url.replace("mongodb://", f"mongodb://{user}:{MONGO_SECRET}@", 1) + (
        f"{joiner}authSource=admin"
    )


def environment(settings, amqp_url: str, mongo_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SAGAWORKS_AMQP_URL": amqp_url,
        "SAGAWORKS_MONGODB_URL": mongo_url,
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
        "SAGAWORKS_FULFILMENT_SAGA": "false",
        "SAGAWORKS_LOG_FORMAT": "json",
        **extra,
    }


def wait_for(check, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(0.25)


def test_two_worker_processes_share_the_work_and_agree_with_the_store(
    rabbitmq_broker, settings, database, secret_amqp_url, secret_mongo_url
):
    # Given two worker processes, connected with credentials, sharing RabbitMQ and MongoDB
    env = environment(settings, secret_amqp_url, secret_mongo_url, SAGAWORKS_LOG_LEVEL="INFO")
    workers = [
        subprocess.Popen(
            [SAGAWORKS, "worker", "--processes", "1", "--threads", "4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    try:
        # When customers register and place orders, and half are confirmed
        customers = [register_customer(f"P{i}") for i in range(5)]
        receipts = [publish(customer) for customer in customers]
        for receipt in receipts:  # an order for a customer not yet registered is rejected
            assert receipt.wait(90) is not None
        orders = [place_order(customers[i % 5].customer_id) for i in range(60)]
        for command in orders:
            publish(command)
        summaries = database[OrderSummaries.collection_name]
        wait_for(lambda: summaries.count_documents({}) == len(orders))
        for command in orders[::2]:
            publish(ConfirmOrder(order_id=command.order_id))
        wait_for(lambda: summaries.count_documents({"status": "confirmed"}) == len(orders) // 2)
        wait_for(lambda: verify_read_models(database).consistent, timeout=30)
    finally:
        for worker in workers:
            worker.terminate()
        output = b"".join(worker.communicate(timeout=60)[0] for worker in workers).decode()

    # Then the read models agree with the event store, and no log line holds a password
    assert verify_read_models(database).consistent
    assert "command.handled" in output
    assert AMQP_SECRET not in output
    assert MONGO_SECRET not in output


def test_cli_output_and_errors_never_show_passwords(settings, secret_amqp_url, secret_mongo_url):
    # Given URLs with passwords, one of them wrong
    env = environment(settings, secret_amqp_url, secret_mongo_url, SAGAWORKS_LOG_LEVEL="DEBUG")
    wrong = environment(
        settings, secret_amqp_url.replace(AMQP_SECRET, AMQP_SECRET + "-wrong"), secret_mongo_url
    )
    data = json.dumps({"customer_id": str(uuid.uuid4()), "name": "Ada", "email": "a@example.com"})

    # When the CLI publishes, queries, and fails to connect
    try:
        runs = [
            subprocess.run(
                [SAGAWORKS, *args], env=e, capture_output=True, text=True, timeout=120, check=False
            )
            for args, e in (
                (["publish", "RegisterCustomer", "--data", data, "--wait", "0"], env),
                (["query", "customer", str(uuid.uuid4()), "--json"], env),
                (["publish", "RegisterCustomer", "--data", data, "--wait", "0"], wrong),
            )
        ]
    finally:
        delete_queues(settings.queue_prefix)

    # Then it worked where it should, failed where it should, and never printed a password
    assert runs[0].returncode == 0, runs[0].stderr[-2000:]
    assert runs[2].returncode != 0
    for run in runs:
        printed = run.stdout + run.stderr
        assert AMQP_SECRET not in printed
        assert MONGO_SECRET not in printed


def test_relay_command_resends_a_commit_stranded_by_a_crash(
    rabbitmq_broker, rabbitmq_worker, settings, database, mongo_url, monkeypatch
):
    # Given a commit whose events were never sent (its process died after the commit)
    customer = register_customer()
    store = EventStore()
    monkeypatch.setattr(commands, "dispatch", lambda commit, store: None)
    commands.execute(customer, store)
    monkeypatch.undo()
    assert get_customer_profile(customer.customer_id).value is None
    time.sleep(1.0)

    # When an operator runs the relay once, as its own process
    env = environment(settings, AMQP_URL, mongo_url, SAGAWORKS_RELAY_GRACE_SECONDS="0.5")
    run = subprocess.run(
        [SAGAWORKS, "relay", "--once", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it re-sent that commit, and the read model caught up
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout) == {"redispatched": 1}
    wait_for(lambda: get_customer_profile(customer.customer_id).value is not None, timeout=30)
