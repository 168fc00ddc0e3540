"""`sagaworks schema export`: schemas a publisher in another language can work from."""

from __future__ import annotations

import json

from workers.cli import main


def test_export_writes_a_schema_per_message_and_an_asyncapi_document(tmp_path):
    # When the schemas are exported
    assert main(["schema", "export", "--out", str(tmp_path)]) == 0

    # Then each message has a schema whose data names its fields, and AsyncAPI maps queues
    place = json.loads((tmp_path / "PlaceOrder.v1.schema.json").read_text())
    assert place["properties"]["type"] == {"const": "PlaceOrder"}
    assert {"order_id", "customer_id", "lines"} <= set(place["properties"]["data"]["required"])
    assert place["properties"]["data"]["additionalProperties"] is False
    asyncapi = json.loads((tmp_path / "asyncapi.json").read_text())
    channel = asyncapi["channels"]["orders_commands"]
    assert channel["address"] == "{prefix}orders.commands"
    assert "PlaceOrder" in channel["messages"]
    assert "handle_order_command" in channel["description"]


def test_asyncapi_3_has_the_service_receive_commands_and_answer_on_reply_to(tmp_path):
    # When the AsyncAPI document is exported
    assert main(["schema", "export", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "asyncapi.json").read_text())

    # Then it is AsyncAPI 3; the service receives commands and replies with an Outcome
    assert doc["asyncapi"].startswith("3.")
    operation = doc["operations"]["receive_orders_commands"]
    assert operation["action"] == "receive"
    assert operation["reply"]["address"]["location"] == "$message.header#/reply_to"
    assert operation["bindings"]["amqp"]["mandatory"] is True


def test_asyncapi_payload_is_the_envelope_with_the_message_in_args(tmp_path):
    # When the AsyncAPI document is exported
    assert main(["schema", "export", "--out", str(tmp_path)]) == 0
    schemas = json.loads((tmp_path / "asyncapi.json").read_text())["components"]["schemas"]

    # Then PlaceOrder's payload is its envelope, args[0] the message, refs all resolvable
    envelope = schemas["PlaceOrderEnvelope"]
    assert envelope["properties"]["args"]["items"] == {"$ref": "#/components/schemas/PlaceOrder"}
    assert envelope["properties"]["actor_name"]["const"] == "handle_order_command"
    assert "message_timestamp" in envelope["required"]
    text = json.dumps(schemas)
    assert "#/$defs/" not in text
    assert {"OrderLine", "Address", "StockLine"} <= set(schemas)


def test_asyncapi_queue_bindings_carry_the_declared_arguments(tmp_path):
    # When the AsyncAPI document is exported
    assert main(["schema", "export", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "asyncapi.json").read_text())

    # Then each queue binding says durable and the dead-letter arguments the workers declare
    queue = doc["channels"]["orders_commands"]["bindings"]["amqp"]["queue"]
    assert queue["durable"] is True and queue["exclusive"] is False
    assert queue["x-arguments"] == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "{prefix}orders.commands.XQ",
    }
