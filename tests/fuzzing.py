"""Hypothesis strategies that mutate valid envelopes the way a careless or hostile upstream would.

Each draw is ``(routing key, body bytes)``: a valid envelope for one of the public command
queues, then zero or more mutations of its fields, its domain message, its nesting, its size
or its encoding.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

from hypothesis import strategies as st

from messages import encode
from tests.support import place_order, register_customer

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = [
    "queue_name",
    "actor_name",
    "args",
    "kwargs",
    "options",
    "message_id",
    "message_timestamp",
]
OPTIONS = [
    "eta",
    "retries",
    "max_retries",
    "pipe_target",
    "on_success",
    "throws",
    "time_limit",
    "x",
]


def base(prefix: str, kind: str) -> tuple[str, dict[str, Any]]:
    """A valid envelope: a registration or an order, on its command queue."""
    if kind == "customer":
        queue, actor, message = "customers.commands", "handle_customer_command", register_customer()
    else:
        queue, actor, message = "orders.commands", "handle_order_command", place_order(uuid.uuid4())
    doc = {
        "queue_name": prefix + queue,
        "actor_name": actor,
        "args": [encode(message)],
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    return prefix + queue, doc


@st.composite
def field_mutation(draw: st.DrawFn, doc: dict[str, Any]) -> None:
    field = draw(st.sampled_from(FIELDS))
    action = draw(st.sampled_from(["drop", "json", "text", "extra"]))
    if action == "drop":
        doc.pop(field, None)
    elif action == "json":
        doc[field] = draw(JSON)
    elif action == "text":
        doc[field] = draw(st.text(max_size=300))
    else:
        doc[draw(st.text(min_size=1, max_size=10))] = draw(JSON)


@st.composite
def special_mutation(draw: st.DrawFn, doc: dict[str, Any], queue: str) -> None:
    """Mutations aimed at what Dramatiq trusts: queue, id, options, arguments."""
    choice = draw(st.integers(0, 7))
    if choice == 0:
        doc["queue_name"] = draw(
            st.sampled_from([queue + ".DQ", "elsewhere", queue.replace("customers", "orders")])
        )
    elif choice == 1:
        doc["message_id"] = draw(
            st.sampled_from([{"$gt": ""}, {"$ne": None}, ["x"], 7, "a" * 500, ""])
        )
    elif choice == 2:
        doc["options"] = {draw(st.sampled_from(OPTIONS)): draw(JSON)}
    elif choice == 3:
        doc["args"] = draw(st.sampled_from([[], [1, 2], [[[]]], ["text"], [None]]))
    elif choice == 4:
        doc["kwargs"] = {draw(st.text(min_size=1, max_size=5)): draw(JSON)}
    elif choice == 5:
        doc["actor_name"] = draw(
            st.sampled_from(["run_fulfilment_saga", "project_order_summary", "nope", ""])
        )
    else:
        message_mutation(draw, doc)


def message_mutation(draw: st.DrawFn, doc: dict[str, Any]) -> None:
    """Mutate the domain message: type, version, data fields, metadata."""
    args = doc.get("args")
    if not (isinstance(args, list) and args and isinstance(args[0], dict)):
        return
    message = args[0]
    choice = draw(st.integers(0, 4))
    if choice == 0:
        message["type"] = draw(
            st.sampled_from(
                ["StockReserved", "ReserveStock", "ChargePayment", "MakeCoffee", "OrderPlaced"]
            )
        )
    elif choice == 1:
        message["version"] = draw(st.sampled_from([0, 2, 99, "1", None]))
    elif choice == 2 and isinstance(message.get("data"), dict) and message["data"]:
        key = draw(st.sampled_from(sorted(message["data"])))
        message["data"][key] = draw(JSON)
    elif choice == 3:
        message["data"] = draw(JSON)
    else:
        message[draw(st.text(min_size=1, max_size=6))] = draw(JSON)


@st.composite
def encoded(draw: st.DrawFn, doc: dict[str, Any], max_bytes: int) -> bytes:
    """The body's bytes: JSON as sent, or re-encoded, nested too deep, too large, or cut."""
    choice = draw(st.integers(0, 9))
    text = json.dumps(doc)
    if choice == 0:
        return text.encode("utf-16")
    if choice == 1:
        return ("[" * draw(st.integers(33, 3000))).encode() + text.encode()
    if choice == 2:
        doc = {**doc, "padding": "x" * (max_bytes + 1)}
        return json.dumps(doc).encode()
    if choice == 3:
        return text.encode()[: draw(st.integers(0, max(len(text) - 1, 0)))]
    if choice == 4:
        return b"\xff" + text.encode()
    return text.encode()


@st.composite
def hostile_deliveries(draw: st.DrawFn, prefix: str, max_bytes: int) -> tuple[str, bytes]:
    """One delivery: a routing key and a body, most of them broken in some way."""
    queue, doc = base(prefix, draw(st.sampled_from(["customer", "order"])))
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            draw(field_mutation(doc))
        else:
            draw(special_mutation(doc, queue))
    return queue, draw(encoded(doc, max_bytes))
