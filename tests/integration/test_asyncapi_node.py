"""The AsyncAPI document as a client team meets it: the official parser, then a generated model."""

from __future__ import annotations

import json

from tests.node import run_node
from workers.cli import main


def test_asyncapi_document_parses_with_no_errors_and_generates_a_client_model(tmp_path):
    # Given the exported AsyncAPI document
    assert main(["schema", "export", "--out", str(tmp_path), "--json"]) == 0

    # When @asyncapi/parser reads it and Modelina generates TypeScript models from it
    out = run_node("check-asyncapi.js", str(tmp_path / "asyncapi.json"), str(tmp_path / "models"))
    report = json.loads(out)

    # Then there are no errors, and the envelope and every public command have a model
    assert report["errors"] == [], report["errors"]
    assert report["version"] == "3.0.0"
    assert {"PlaceOrderEnvelope", "PlaceOrder", "OrderLine", "Outcome"} <= set(report["models"])
    envelope = (tmp_path / "models" / "PlaceOrderEnvelope.ts").read_text()
    assert "args" in envelope and "PlaceOrder" in envelope
