"""Message contracts: the wire shape, strict validation, correlation and causation."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from messages import InvalidMessage, UnknownMessageType, decode, encode
from messages.orders import OrderLine, PlaceOrder
from tests.support import order_placed, place_order


def test_a_command_survives_the_wire_unchanged():
    # Given a command
    command = place_order(uuid.uuid4(), ("SKU-1", 3, "2.10"))

    # When it is encoded to JSON and decoded back
    decoded = decode(json.dumps(encode(command)))

    # Then it is the same message, money still exact
    assert decoded == command
    assert isinstance(decoded, PlaceOrder)
    assert decoded.lines[0].unit_price == Decimal("2.10")


def test_the_first_message_correlates_with_itself_and_effects_follow_it():
    # Given a first command
    command = place_order(uuid.uuid4())

    # When an event is caused by it
    event = order_placed(command)

    # Then the correlation flows unchanged and the causation names the command
    assert command.correlation_id == command.message_id
    assert event.correlation_id == command.correlation_id
    assert event.causation_id == command.message_id


def test_money_on_the_wire_is_a_string_never_a_float():
    wire = encode(place_order(uuid.uuid4(), ("SKU-1", 1, "0.10")))
    assert wire["data"]["lines"][0]["unit_price"] == "0.10"


IDS = '"message_id": "6f1c1c1e-8a52-4c38-9a2e-7d1f8f0b7a10", "occurred_at": "2026-11-22T06:00:00Z"'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "Nope", "version": 1, "data": {}}', "unknown message type"),
        ('{"type": "PlaceOrder", "version": 9, "data": {}}', "newer than"),
        ('{"type": "PlaceOrder", "version": 1, "data": {}}', "lacks required keys"),
        (f'{{{IDS}, "type": "PlaceOrder", "version": 1, "data": {{}}, "extra": 1}}', "unexpected"),
        (f'{{{IDS}, "type": "PlaceOrder", "version": 1, "data": {{"order_id": "x"}}}}', "failed"),
    ],
)
def test_bad_input_is_refused_with_its_reason(body, expected):
    with pytest.raises(InvalidMessage, match=expected):
        decode(body)


def test_unknown_types_are_a_kind_of_invalid_message():
    with pytest.raises(UnknownMessageType):
        decode({"type": "MakeCoffee", "version": 1, "data": {}})


def test_unknown_fields_are_refused():
    wire = encode(place_order(uuid.uuid4()))
    wire["data"]["discount"] = "100.00"
    with pytest.raises(InvalidMessage, match="discount"):
        decode(wire)


def test_messages_are_frozen():
    line = OrderLine(sku="A", quantity=1, unit_price=Decimal("1.00"))
    with pytest.raises(ValueError, match="frozen"):
        line.quantity = 2  # type: ignore[misc]


def test_an_order_needs_at_least_one_line():
    wire = encode(place_order(uuid.uuid4()))
    wire["data"]["lines"] = []
    with pytest.raises(InvalidMessage, match="lines"):
        decode(wire)
