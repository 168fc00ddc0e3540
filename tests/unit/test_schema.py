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
    refs = json.dumps(asyncapi["channels"]["orders.commands"])
    assert "PlaceOrder.v1" in refs
    assert "handle_order_command" in refs
