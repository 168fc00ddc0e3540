"""Envelope screening: every malformed delivery is refused with a reason naming its field."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from messages import encode
from tests.support import register_customer
from workers.runtime.consumer import screen_delivery

QUEUE = "customers.commands"
ACTORS = {"handle_customer_command": QUEUE, "run_fulfilment_saga": "sagas.fulfilment"}


def valid(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "queue_name": QUEUE,
        "actor_name": "handle_customer_command",
        "args": [encode(register_customer())],
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    doc.update(fields)
    return doc


def reason(body: bytes | dict[str, Any], queue: str = QUEUE, exchange: str = "") -> str | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    rejection = screen_delivery(queue, exchange, raw, 4096, ACTORS)
    return None if rejection is None else rejection.reason


def test_valid_envelope_passes() -> None:
    assert reason(valid()) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (valid(queue_name="orders.commands"), "queue_name"),
        (valid(queue_name=["customers.commands"]), "queue_name"),
        (valid(message_id={"$gt": ""}), "message_id"),
        (valid(message_id="a" * 200), "message_id"),
        (valid(message_id="id with spaces"), "message_id"),
        (valid(actor_name=["x"]), "actor_name"),
        (valid(actor_name="nobody"), "actor_name"),
        (valid(actor_name="run_fulfilment_saga"), "actor_name"),
        (valid(args={"a": 1}), "args"),
        (valid(kwargs=[]), "kwargs"),
        (valid(options=["eta"]), "options"),
        (valid(options={"eta": 1}), "options.eta"),
        (valid(options={"retries": -1}), "options.retries"),
        (valid(options={"retries": "3"}), "options.retries"),
        (valid(options={"pipe_target": {}}), "options.pipe_target"),
        (valid(options={"on_success": "x"}), "options.on_success"),
        (valid(message_timestamp=True), "message_timestamp"),
        (valid(message_timestamp="now"), "message_timestamp"),
        ({k: v for k, v in valid().items() if k != "message_id"}, "message_id"),
        ({k: v for k, v in valid().items() if k != "message_timestamp"}, "message_timestamp"),
        ({**valid(), "extra": 1}, "extra"),
        (b"not json", "body"),
        (b"\xff\xfe{}", "body"),
        (b"[1, 2]", "body"),
        (b'{"a": 1, "a": 2}', "body"),
        (b'{"a": NaN}', "body"),
        (b"[" * 40 + b"]" * 40, "body"),
        (b" " * 5000, "body"),
    ],
)
def test_malformed_envelope_is_refused_naming_the_field(body: Any, field: str) -> None:
    # Given a delivery malformed in one field
    # When it is screened
    found = reason(body)
    # Then it is refused, and the reason starts with the field at fault
    assert found is not None
    assert found.startswith(f"{field}:"), found


def test_delay_queue_needs_an_eta_and_its_own_queue_name() -> None:
    delayed = valid(queue_name=QUEUE + ".DQ", options={"eta": 1})
    assert reason(delayed, queue=QUEUE + ".DQ") is None
    assert reason(valid(queue_name=QUEUE + ".DQ"), queue=QUEUE + ".DQ").startswith("options.eta")


def test_internal_command_and_event_are_refused_from_upstream_only_as_appropriate() -> None:
    # Given the internal and upstream routes
    upstream = "sagaworks.upstream"
    # Then a public command passes both ways, an event passes neither
    assert reason(valid(), exchange=upstream) is None
    event = {**encode(register_customer()), "type": "CustomerRegistered"}
    assert "is an event" in (reason(valid(args=[event])) or "")
    saga = valid(queue_name="sagas.fulfilment", actor_name="run_fulfilment_saga")
    assert reason(saga, queue="sagas.fulfilment") is None
    assert "takes no message from upstream" in (
        reason(saga, queue="sagas.fulfilment", exchange=upstream) or ""
    )
