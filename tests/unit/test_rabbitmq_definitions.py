"""The RabbitMQ definitions docker-compose loads: upstream users may write to the upstream
exchange only, so only the service's own user can use the default exchange (the trusted route).

Checked live on a private RabbitMQ node loading this file: see docs/dead-letters.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from workers.boot import load_actor_modules
from workers.runtime.admission import UPSTREAM_EXCHANGE
from workers.runtime.broker import BASE_QUEUES

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"


def definitions() -> dict[str, Any]:
    return dict(json.loads(DEFINITIONS.read_text()))


def permission(user: str) -> dict[str, str]:
    [found] = [p for p in definitions()["permissions"] if p["user"] == user]
    return dict(found)


def test_upstream_may_write_to_the_upstream_exchange_and_nowhere_else() -> None:
    # Given the upstream user's permissions and every queue the service declares
    load_actor_modules()
    upstream = permission("upstream")
    queues = [q + s for q in BASE_QUEUES.values() for s in ("", ".DQ", ".XQ")]
    # When its write pattern is matched against exchanges and queues
    writes = re.compile(upstream["write"])
    # Then only the upstream exchange matches: not the default exchange, not any queue
    assert writes.search(UPSTREAM_EXCHANGE)
    assert not [name for name in ["amq.default", "", *queues] if writes.search(name)]
    assert upstream["configure"] == upstream["read"] == "^$"


def test_the_service_user_owns_the_default_exchange_and_the_upstream_exchange_is_declared() -> None:
    service = permission("sagaworks")
    assert re.compile(service["write"]).search("amq.default")
    [exchange] = definitions()["exchanges"]
    assert (exchange["name"], exchange["type"], exchange["durable"]) == (
        UPSTREAM_EXCHANGE,
        "direct",
        True,
    )


def test_compose_loads_the_definitions_and_workers_connect_as_the_service_user() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert "./deploy/rabbitmq/definitions.json:/etc/rabbitmq/definitions.json" in compose
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf
    assert "amqp://sagaworks:sagaworks-dev@rabbitmq:5672/" in compose
    [user] = [u for u in definitions()["users"] if u["name"] == "sagaworks"]
    raw = base64.b64decode(user["password_hash"])
    assert hashlib.sha256(raw[:4] + b"sagaworks-dev").digest() == raw[4:]
