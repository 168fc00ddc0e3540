"""``sagaworks sagas list`` and ``show`` on sagas run on the stub broker."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from tests.unit.test_saga_actor import SAGA_ON, fulfil
from workers.cli import main
from workers.subscribers import fulfilment as sagas


@pytest.fixture(autouse=True)
def cli_env(monkeypatch, settings, stub_broker):
    monkeypatch.setenv("SAGAWORKS_MONGODB_URL", settings.mongodb() or "")
    monkeypatch.setenv("SAGAWORKS_MONGODB_DB", settings.mongodb_db)
    sagas.configure(settings.model_copy(update=SAGA_ON))
    yield
    # The CLI configured logging onto this test's captured stderr: undo it.
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_sagas_list_filters_by_state(stub_broker, stub_worker, capsys):
    # Given a completed and a cancelled saga
    done = fulfil(stub_broker, stub_worker, ("A", 1, "1.00"))
    cancelled = fulfil(stub_broker, stub_worker, ("B", 5, "1.00"), stock=1)

    # When ops list the cancelled ones
    capsys.readouterr()
    assert main(["sagas", "list", "--state", "cancelled", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)

    # Then only that one is listed, with its reason, and the counts cover both
    assert [s["order_id"] for s in listed["sagas"]] == [cancelled["_id"]]
    assert listed["sagas"][0]["reason"] == "out of stock: B"
    assert listed["by_state"] == {"completed": 1, "cancelled": 1}
    assert done["_id"] != cancelled["_id"]


def test_sagas_show_prints_the_timeline_with_its_causes(stub_broker, stub_worker, capsys):
    # Given a completed saga
    saga = fulfil(stub_broker, stub_worker, ("A", 1, "1.00"))

    # When ops show it
    capsys.readouterr()
    assert main(["sagas", "show", saga["_id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)

    # Then each transition names the message that caused it and what was sent
    causes = [(e["message_type"], e["to"]) for e in shown["timeline"]]
    assert causes == [
        ("OrderPlaced", "reserving"),
        ("StockReserved", "charging"),
        ("PaymentCharged", "confirming"),
        ("OrderConfirmed", "completed"),
    ]
    assert shown["timeline"][2]["sent"] == ["ConfirmOrder"]
    assert shown["timeline"][3]["sent"] == ["CommitStock"]
    assert shown["saga"]["pending"] == []


def test_sagas_list_older_than_parses_durations(stub_broker, capsys):
    # When no saga has been quiet that long, Then the list is empty and the text says so
    assert main(["sagas", "list", "--older-than", "5m"]) == 0
    assert "order" in capsys.readouterr().out


def test_sagas_list_stuck_shows_sagas_past_their_deadline_and_flagged_ones(database, capsys):
    # Given sagas: finished, running within its deadline, running past it, and flagged
    now = datetime.now(UTC)
    database.sagas.insert_many(
        [
            {"_id": "done", "status": "completed", "deadline": None, "updated_at": now},
            {"_id": "fine", "status": "charging", "deadline": now + timedelta(seconds=20)},
            {"_id": "late", "status": "releasing", "deadline": now - timedelta(minutes=3)},
            {"_id": "odd", "status": "flagged", "deadline": None, "updated_at": now},
        ]
    )

    # When ops list the stuck ones
    capsys.readouterr()
    code = main(["sagas", "list", "--stuck", "--json"])
    listed = json.loads(capsys.readouterr().out)

    # Then the one past its deadline and the flagged one are listed, and the exit says so
    assert code == 1
    assert sorted(s["order_id"] for s in listed["sagas"]) == ["late", "odd"]
