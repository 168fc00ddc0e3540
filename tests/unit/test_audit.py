"""`sagaworks audit`: green on a store the saga ran, and each invariant named when broken."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from messages import caused_by
from messages.inventory import AddStock, StockHeld, sku_stream
from messages.orders import OrderCancelled, order_stream
from messages.payments import PaymentCharged, payment_stream
from readstore.eventlog import commits
from tests.support import place_order, register_customer, settle
from workers.cli import main
from workers.cli.status import deep_audit
from workers.ops import audit_scan
from workers.ops.audit import audit
from workers.ops.status import Status
from workers.publishing import publish
from workers.subscribers import fulfilment as sagas
from workers.write.eventstore import EventStore
from workers.write.writebehind import WRITE_BEHIND

SETTLED = timedelta(0)  # every order is judged: nothing is in flight in these tests


@pytest.fixture(autouse=True)
def saga_on(settings, stub_broker):
    sagas.configure(
        settings.model_copy(update={"fulfilment_saga": True, "saga_step_deadline_seconds": 3.0})
    )


def run_orders(broker, worker, methods=("card", "card", "declined-card"), stock=10):
    """Orders through the whole saga: one customer, SKUs A and B restocked."""
    customer = register_customer()
    publish(customer)
    publish(AddStock(sku="A", quantity=stock))
    publish(AddStock(sku="B", quantity=stock))
    settle(broker, worker)
    orders = [
        place_order(customer.customer_id, ("A", 2, "5.00"), ("B", 1, "1.50"), payment_method=m)
        for m in methods
    ]
    for order in orders:
        publish(order)
    settle(broker, worker)
    WRITE_BEHIND.flush()  # the sagas' "sent" marks are written behind; the grace here is 0
    return orders


def test_audit_is_green_on_a_store_the_saga_ran(stub_broker, stub_worker, database):
    # Given confirmed and declined orders, run through the saga
    run_orders(stub_broker, stub_worker)

    # When the audit runs over the whole store
    report = audit(database, grace=SETTLED, full=True)

    # Then every invariant holds, and money kept adds up to the confirmed totals
    assert report.findings == []
    assert report.checked["orders"] == 3
    assert report.checked["skus"] == 2
    kept = report.money["charged"] - report.money["refunded"]
    assert kept == report.money["confirmed_total"]


def test_audit_names_a_charge_kept_for_a_cancelled_order(stub_broker, stub_worker, database):
    # Given a declined order, and then a charge for it that nothing refunds
    order = run_orders(stub_broker, stub_worker, methods=("declined-card",))[0]
    charged = caused_by(
        PaymentCharged, order, order_id=order.order_id, amount=Decimal("11.50"), reference="r"
    )
    EventStore(database).append(payment_stream(order.order_id), 1, [charged])

    # When the audit runs
    report = audit(database, grace=SETTLED, full=True)

    # Then it names that invariant first (the read models, which never saw the charge, differ
    # from the log too)
    assert report.broken[0] == "no_charge_kept_for_cancelled"
    assert set(report.broken) <= {"no_charge_kept_for_cancelled", "read_models_match_log"}
    assert str(order.order_id) in report.findings[0][1]


def test_audit_names_each_invariant_when_acknowledged_writes_are_lost(
    stub_broker, stub_worker, database
):
    # Given orders run through, then writes lost as a crash loses them: a confirmation
    # (its effects were sent), the saga of another order, and a stock hold
    first, second, _ = run_orders(stub_broker, stub_worker)
    log = commits(database)
    log.delete_one({"stream_id": order_stream(first.order_id), "version": 2})
    database["sagas"].delete_one({"_id": str(second.order_id)})
    log.delete_one({"stream_id": sku_stream("A"), "events.type": StockHeld.type_name()})

    # When the audit runs
    report = audit(database, grace=SETTLED, full=True)

    # Then each broken invariant is named
    assert set(report.broken) >= {"orders_terminal", "stock_conserved", "read_models_match_log"}
    details = " ".join(detail for _, detail in report.findings)
    assert f"order {first.order_id}: neither confirmed nor cancelled" in details
    assert f"order {second.order_id}: placed, but it has no saga" in details


def test_audit_names_a_saga_running_past_its_deadline(stub_broker, stub_worker, database):
    # Given a saga left in "charging" long past its step deadline
    order = run_orders(stub_broker, stub_worker, methods=("card",))[0]
    past = datetime.now(UTC) - timedelta(hours=1)
    database["sagas"].update_one(
        {"_id": str(order.order_id)},
        {"$set": {"status": "charging", "deadline": past, "updated_at": past}},
    )

    # When the audit runs with the default grace
    report = audit(database, full=True)

    # Then the saga is named
    assert "sagas_terminal_by_deadline" in report.broken


def test_audit_with_a_budget_resumes_where_the_last_run_stopped(
    stub_broker, stub_worker, database, monkeypatch
):
    # Given three settled orders, and the order ids cut in four slices
    run_orders(stub_broker, stub_worker)
    monkeypatch.setattr(audit_scan, "SLICES", ["0", "4", "8", "c"])

    # When the audit runs with no time to spare, five times
    runs = [audit(database, budget_seconds=0, grace=SETTLED) for _ in range(5)]

    # Then each run checked one slice and the next resumed after it: the first four covered
    # every order once, the fifth started over; the customer profiles, which need every
    # order, were not compared
    assert sum(r.checked["orders"] for r in runs[:4]) == 3
    assert [bool(r.not_reached) for r in runs] == [True, True, True, True, True]
    assert [r.money != {} for r in runs] == [False, False, False, False, False]
    assert not any(r.checked["customer_profile_passes"] for r in runs)
    assert all(r.healthy for r in runs)


def test_full_audit_reads_each_commit_once(stub_broker, stub_worker, database):
    # Given orders run through the saga
    run_orders(stub_broker, stub_worker)

    # When the whole store is audited
    report = audit(database, grace=SETTLED, full=True)

    # Then the log was read once: as many commits read as the store holds
    assert report.checked["commits_read"] == commits(database).count_documents({})
    assert report.complete


@pytest.mark.parametrize("full", [True, False])
def test_audit_names_an_order_summary_that_differs_from_the_log(
    stub_broker, stub_worker, database, full
):
    # Given a confirmed order whose summary says cancelled
    order = run_orders(stub_broker, stub_worker, methods=("card",))[0]
    database["order_summary"].update_one(
        {"_id": str(order.order_id)}, {"$set": {"status": "cancelled"}}
    )

    # When the audit runs, over the whole store or with a budget
    report = audit(database, grace=SETTLED, full=full)

    # Then the summary is named
    found = [detail for name, detail in report.findings if name == "read_models_match_log"]
    assert [f"order_summary {order.order_id}" in d for d in found] == [True]


def test_audit_names_a_customer_profile_that_differs_from_the_log(
    stub_broker, stub_worker, database
):
    # Given orders run through, then a customer profile counting one more confirmed order
    order = run_orders(stub_broker, stub_worker)[0]
    database["customer_profile"].update_one(
        {"_id": str(order.customer_id)}, {"$inc": {"orders_confirmed": 1}}
    )

    # When the whole store is audited
    report = audit(database, grace=SETTLED, full=True)

    # Then the profile is named
    found = [detail for name, detail in report.findings if name == "read_models_match_log"]
    assert [f"customer_profile {order.customer_id}" in d for d in found] == [True]


def test_audit_command_exit_code_tells_an_incomplete_run_from_a_healthy_one(
    stub_broker, stub_worker, database, settings, monkeypatch, capsys
):
    # Given a healthy store whose orders are cut in four slices
    run_orders(stub_broker, stub_worker)
    monkeypatch.setattr(audit_scan, "SLICES", ["0", "4", "8", "c"])
    monkeypatch.setenv("SAGAWORKS_MONGODB_URL", settings.mongodb() or "")
    monkeypatch.setenv("SAGAWORKS_MONGODB_DB", settings.mongodb_db)

    # When a run has no time to spare, then a run checks everything
    partial = main(["audit", "--budget", "0", "--grace", "0"])
    text = capsys.readouterr().out
    whole = main(["audit", "--full", "--grace", "0"])

    # Then the first exits 4 (nothing broken, budget hit), the second 0
    assert (partial, whole) == (4, 0)
    assert "incomplete: the budget ran out" in text


def test_audit_notices_a_stream_shorter_than_an_earlier_audit_read(
    stub_broker, stub_worker, database
):
    # Given an audit that read every SKU stream, then a SKU's last commit lost
    run_orders(stub_broker, stub_worker)
    audit(database, grace=SETTLED, full=True)
    last = commits(database).find_one({"stream_id": sku_stream("B")}, sort=[("version", -1)])
    commits(database).delete_one({"_id": last["_id"]})

    # When the audit runs again
    report = audit(database, grace=SETTLED, full=True)

    # Then the lost write is named
    assert "log_intact" in report.broken


def test_audit_command_exits_non_zero_naming_the_broken_invariants(
    stub_broker, stub_worker, database, settings, monkeypatch, capsys
):
    # Given a store where a charged order's confirmation became a cancellation
    order = run_orders(stub_broker, stub_worker, methods=("card",))[0]
    cancelled = caused_by(
        OrderCancelled,
        order,
        order_id=order.order_id,
        customer_id=order.customer_id,
        reason="lost",
        total=Decimal("11.50"),
    )
    commits(database).delete_one({"stream_id": order_stream(order.order_id), "version": 2})
    EventStore(database).append(order_stream(order.order_id), 1, [cancelled])
    monkeypatch.setenv("SAGAWORKS_MONGODB_URL", settings.mongodb() or "")
    monkeypatch.setenv("SAGAWORKS_MONGODB_DB", settings.mongodb_db)
    capsys.readouterr()

    # When an operator runs the audit, as JSON, then as text
    code = main(["audit", "--full", "--grace", "0", "--json"])
    data = json.loads(capsys.readouterr().out)
    main(["audit", "--full", "--grace", "0"])
    text = capsys.readouterr().out

    # Then it exits non-zero and names each broken invariant
    assert code == 1
    assert data["healthy"] is False
    assert "no_charge_kept_for_cancelled" in data["broken"]
    assert "BROKEN no_charge_kept_for_cancelled" in text


def test_status_deep_adds_each_broken_invariant_to_what_needs_attention(
    stub_broker, stub_worker, database, settings
):
    # Given a declined order whose charge nothing refunds
    order = run_orders(stub_broker, stub_worker, methods=("declined-card",))[0]
    charged = caused_by(
        PaymentCharged, order, order_id=order.order_id, amount=Decimal("11.50"), reference="r"
    )
    EventStore(database).append(payment_stream(order.order_id), 1, [charged])
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    commits(database).update_many({}, {"$set": {"committed_at": an_hour_ago}})
    database["sagas"].update_many({}, {"$set": {"updated_at": an_hour_ago}})
    result = Status([], {}, {}, 0)

    # When status runs deep, an hour later (past the audit's grace)
    extra = deep_audit(result, database, settings.model_copy(update={"fulfilment_saga": True}))

    # Then the broken invariant needs attention, and the audit's report is in the output
    assert any("no_charge_kept_for_cancelled" in note for note in result.attention)
    assert extra["audit"]["broken"][0] == "no_charge_kept_for_cancelled"  # and the read models


def test_audit_names_a_finished_saga_that_never_sent_its_messages(
    stub_broker, stub_worker, database
):
    # Given a finished saga whose last messages were never sent
    order = run_orders(stub_broker, stub_worker, methods=("card",))[0]
    unsent = [{"type": "ConfirmOrder", "data": {}}]
    database["sagas"].update_one({"_id": str(order.order_id)}, {"$set": {"pending": unsent}})

    # When the audit runs
    report = audit(database, grace=SETTLED, full=True)

    # Then the saga is named
    assert report.broken == ["sagas_terminal_by_deadline"]
