"""A saga's "sent" marks lost with the process that sent them: the sweeper repairs them.

A step's messages are saved as pending with its state, sent, then forgotten by a mark
written behind. A worker killed (or a store paused) before that mark is written leaves them
pending although they went out; nothing else comes for a finished saga, so without a repair
it would count as running for ever.
"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from messages import Message
from messages.inventory import StockLine, StockReserved
from messages.orders import OrderConfirmed
from messages.payments import PaymentCharged
from readstore.db import get_database
from sagas.store import SagaStore
from tests.support import order_placed, place_order
from workers.subscribers import fulfilment as sagas
from workers.subscribers.deadlines import Sweeper


@pytest.fixture
def lost_marks(monkeypatch, stub_broker, settings):
    """The saga on; what it sends is recorded, and its "sent" marks are never written."""
    sagas.configure(settings.model_copy(update={"fulfilment_saga": True}))
    monkeypatch.setattr(sagas, "send", lambda _: None)
    monkeypatch.setattr(sagas.WRITE_BEHIND, "add", lambda *_: None)


def sweep(store: SagaStore, at: datetime) -> tuple[list[Message], list[Message]]:
    """One sweeper pass at ``at``: the deadlines it fired and the commands it sent."""
    deadlines: list[Message] = []
    commands: list[Message] = []
    Sweeper(store, deadlines.append, commands.append, timedelta(seconds=30)).run_once(at)
    return deadlines, commands


def test_finished_saga_whose_sent_marks_were_lost_is_finished_after_a_sweep(lost_marks):
    # Given an order run to its end by a worker whose "sent" marks were never written
    placed = order_placed(place_order(uuid.uuid4(), ("A", 2, "5.00")))
    order = placed.order_id
    sagas.run_saga(placed)
    sagas.run_saga(StockReserved(order_id=order, lines=(StockLine(sku="A", quantity=2),)))
    sagas.run_saga(PaymentCharged(order_id=order, amount=Decimal("10.00"), reference="r"))
    sagas.run_saga(
        OrderConfirmed(order_id=order, customer_id=placed.customer_id, total=Decimal("10.00"))
    )
    store = SagaStore(get_database())
    assert store.count_running() == 1

    # When the sweeper passes, past the grace the messages had to be sent in
    deadlines, commands = sweep(store, datetime.now(UTC) + timedelta(minutes=1))

    # Then what was left pending is sent again (its receivers take each once) and forgotten:
    # the saga no longer counts as running, and no deadline fires for a finished saga
    assert sorted(m.type_name() for m in commands) == [
        "ChargePayment",
        "CommitStock",
        "ConfirmOrder",
        "ReserveStock",
    ]
    assert deadlines == []
    assert store.count_running() == 0
    assert sweep(store, datetime.now(UTC) + timedelta(hours=1)) == ([], [])


def test_running_saga_whose_sent_mark_was_lost_is_resent_before_its_deadline(lost_marks):
    # Given a saga charging, whose ReserveStock and ChargePayment marks were lost
    placed = order_placed(place_order(uuid.uuid4(), ("A", 1, "5.00")))
    sagas.run_saga(placed)
    reserved = StockReserved(order_id=placed.order_id, lines=(StockLine(sku="A", quantity=1),))
    sagas.run_saga(reserved)
    store = SagaStore(get_database())
    record = store.load(str(placed.order_id))
    assert record is not None and record.state.deadline is not None

    # When the sweeper passes after the grace but before the step's deadline
    at = datetime.now(UTC) + timedelta(seconds=sagas.settings().relay_grace_seconds + 1)
    assert at < record.state.deadline
    deadlines, commands = sweep(store, at)

    # Then the messages are sent again, no deadline fires, and the deadline still stands
    assert sorted(m.type_name() for m in commands) == ["ChargePayment", "ReserveStock"]
    assert deadlines == []
    doc = store.get(str(placed.order_id))
    assert doc is not None
    assert doc["pending"] == []
    assert doc["wake_at"] == doc["deadline"]
