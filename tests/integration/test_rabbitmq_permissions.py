"""The definitions file on a private RabbitMQ node: upstream can reach command queues only.

Starting a node takes about a minute on a loaded machine, so this runs when
``SAGAWORKS_PRIVATE_RABBITMQ=1`` is set (CI sets it; the shared node is never reconfigured).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from workers.runtime.admission import UPSTREAM_EXCHANGE

DEFINITIONS = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"
pytestmark = pytest.mark.skipif(
    os.environ.get("SAGAWORKS_PRIVATE_RABBITMQ") != "1",
    reason="starts a private RabbitMQ node: set SAGAWORKS_PRIVATE_RABBITMQ=1",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def node() -> Iterator[int]:
    """A private node loading the definitions file; its AMQP port."""
    base = Path(tempfile.mkdtemp(prefix="sw-rabbit-"))
    port, name = free_port(), f"swperm{uuid.uuid4().hex[:6]}@localhost"
    shutil.copy(DEFINITIONS, base / "definitions.json")
    conf = f"listeners.tcp.default = {port}\nload_definitions = {base}/definitions.json\n"
    (base / "rabbitmq.conf").write_text(conf)
    (base / "enabled_plugins").write_text("[].\n")
    subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(base)], check=True)
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
    }
    server = subprocess.Popen(["rabbitmq-server"], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_running(name)
        yield port
    finally:
        subprocess.run(["rabbitmqctl", "-n", name, "stop"], check=False, capture_output=True)
        server.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def wait_running(name: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    check = ["rabbitmq-diagnostics", "-q", "-n", name, "check_running"]
    while subprocess.run(check, check=False, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not start")
        time.sleep(1)


def publish(port: int, user: str, exchange: str, key: str) -> str:
    """``ok`` or the broker's refusal code."""
    url = f"amqp://{user}:{user}-dev@127.0.0.1:{port}/"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, key, b"{}", mandatory=True)
        return "ok"
    except pika.exceptions.ChannelClosedByBroker as exc:
        return str(exc.reply_code)
    finally:
        if connection.is_open:
            connection.close()


def test_upstream_reaches_command_queues_through_its_exchange_and_nothing_else(node: int) -> None:
    # Given the service's queues, declared and bound by the service's own user
    url = f"amqp://sagaworks:sagaworks-dev@127.0.0.1:{node}/"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for queue in ("orders.commands", "sagas.fulfilment"):
        channel.queue_declare(queue, durable=True)
    channel.queue_bind("orders.commands", UPSTREAM_EXCHANGE, routing_key="orders.commands")
    connection.close()
    # When the upstream user publishes each way
    # Then only the upstream exchange to a command queue is allowed
    assert publish(node, "upstream", UPSTREAM_EXCHANGE, "orders.commands") == "ok"
    assert publish(node, "upstream", "", "orders.commands") == "403"
    assert publish(node, "upstream", "", "sagas.fulfilment") == "403"
    assert publish(node, "sagaworks", "", "sagas.fulfilment") == "ok"
