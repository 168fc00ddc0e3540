"""`sagaworks query`: the read models as an operator reads them."""

from __future__ import annotations

import json

from messages.inventory import AddStock
from tests.support import settle
from workers.cli import main
from workers.publishing import publish


def test_query_stock_lists_each_sku_and_refuses_an_unknown_one(
    stub_broker, stub_worker, settings, monkeypatch, capsys
):
    # Given two SKUs restocked
    publish(AddStock(sku="SKU-A", quantity=5))
    publish(AddStock(sku="SKU-B", quantity=2))
    publish(AddStock(sku="SKU-A", quantity=3))
    settle(stub_broker, stub_worker)
    monkeypatch.setenv("SAGAWORKS_MONGODB_URL", settings.mongodb() or "")
    monkeypatch.setenv("SAGAWORKS_MONGODB_DB", settings.mongodb_db)
    capsys.readouterr()

    # When an operator asks for every SKU, then for one that does not exist
    listed = main(["query", "stock", "--json"])
    levels = json.loads(capsys.readouterr().out)
    missing = main(["query", "stock", "SKU-Z"])

    # Then the levels add up per SKU, and the unknown SKU is an error
    assert listed == 0
    assert [(lv["sku"], lv["on_hand"], lv["available"]) for lv in levels] == [
        ("SKU-A", 8, 8),
        ("SKU-B", 2, 2),
    ]
    assert missing == 1
