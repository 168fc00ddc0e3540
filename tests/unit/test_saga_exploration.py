"""The fulfilment saga explored in every message order, with perturbations, on its real steps.

One order runs through the real saga runner and step table, the real inventory, payment and
order deciders, on in-memory stores (no broker). Exhaustive: every ordering of the messages
in flight, with a step deadline firing, an upstream CancelOrder, and a failed send at every
point (and, separately, a duplicate of every message at every point, and a message overtaken
between its read and its write by any other at every point); then random runs with larger
budgets from a fixed seed. After each run the invariants are checked. Each bug these fixed is
put back, one at a time, and the exploration must find it. A longer run:
``sagaworks sagas explore`` (see README, "Sagas").
"""

from functools import cache

import pytest

from messages import caused_by
from messages.fulfilment import StepDeadlinePassed
from messages.inventory import (
    StockReleased,
    StockReservationFailed,
    StockReserved,
    merge_lines,
)
from messages.orders import OrderCancelled, OrderConfirmed, OrderPlaced
from messages.payments import PaymentCharged, PaymentDeclined
from sagas import runner
from sagas.fulfilment import HANDLES, TABLE, SagaStatus
from workers.contexts.reservations import Inventory
from workers.workloads.exploration import SCENARIOS, Budget, Report, explore, walk
from workers.workloads.exploration.memory import MemorySagaStore

S = SagaStatus
ORDERINGS = Budget(deadlines=1, cancels=1, duplicates=0, failures=1)
DUPLICATES = Budget(deadlines=1, cancels=0, duplicates=1, failures=0)
RACES = Budget(deadlines=1, cancels=1, duplicates=0, failures=0, races=1)
BUDGETS = (ORDERINGS, DUPLICATES, RACES)
#: Pairs of the step table no run can reach, and why. Everything else must be reached.
UNREACHABLE = {
    **{(s, OrderPlaced): "the saga's first message: again, it is a handled duplicate" for s in S},
    **{(S.FLAGGED, k): "flagged needs an upstream ConfirmOrder, not in the model" for k in HANDLES},
    **{
        (s, OrderConfirmed): "only the saga confirms the order, from confirming"
        for s in (S.RESERVING, S.CHARGING, S.RELEASING, S.CANCELLING, S.CANCELLED, S.COMPLETED)
    },
    **{
        (S.COMPLETED, k): "every reply was taken before completing: only duplicates come"
        for k in (
            StockReserved,
            StockReservationFailed,
            StockReleased,
            PaymentCharged,
            PaymentDeclined,
            OrderCancelled,
        )
    },
    **{
        (s, k): "the reservation's one outcome was taken to get here"
        for s, kinds in {
            S.CHARGING: (StockReserved, StockReservationFailed, StockReleased),
            S.CONFIRMING: (StockReserved, StockReservationFailed, StockReleased),
            S.CANCELLING: (StockReservationFailed, StockReleased),
            S.CANCELLED: (StockReservationFailed, StockReleased),
        }.items()
        for k in kinds
    },
    (S.CONFIRMING, PaymentCharged): "the payment's one outcome was taken to get here",
    (S.CONFIRMING, PaymentDeclined): "the payment's one outcome was taken to get here",
    (S.CANCELLED, OrderCancelled): "the order's one cancellation was taken to get here",
    (S.RESERVING, PaymentCharged): "no ChargePayment yet (a lost save: tested in the steps)",
    (S.RESERVING, PaymentDeclined): "no ChargePayment yet",
    (S.RESERVING, StockReleased): "no ReleaseStock yet",
}


@cache
def exhaustive(scenario: int, budget: Budget) -> Report:
    return explore(SCENARIOS[scenario], budget)


@pytest.mark.parametrize("scenario", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_every_ordering_with_a_deadline_a_cancel_and_a_failed_send_keeps_the_invariants(
    scenario,
):
    # Given one order, When every ordering of its messages is run, with a deadline, an
    # upstream cancellation and a failed send placed at every point
    report = exhaustive(scenario, ORDERINGS)
    print(SCENARIOS[scenario].name, report.summary())

    # Then every run ends with the saga finished and the invariants holding
    assert report.failures == []
    assert report.runs > 10_000 or SCENARIOS[scenario].name == "short of stock"


@pytest.mark.parametrize("scenario", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_every_ordering_with_a_duplicate_keeps_the_invariants(scenario):
    # Given one order, When every message is delivered twice at every point, with a deadline
    report = exhaustive(scenario, DUPLICATES)

    # Then no effect is applied twice and every invariant holds
    assert report.failures == []
    assert report.runs > 100


@pytest.mark.parametrize("scenario", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_every_ordering_with_a_message_overtaken_mid_handling_keeps_the_invariants(scenario):
    # Given one order, When at every point any message in flight is overtaken between its
    # read and its write by any other (two workers racing), with a deadline and a cancel
    report = exhaustive(scenario, RACES)

    # Then every run ends with the invariants holding
    assert report.failures == []
    assert report.runs > 10_000


def test_random_runs_with_larger_budgets_keep_the_invariants():
    # Given a fixed seed, When runs with several deadlines, duplicates, failed sends and
    # races go
    budget = Budget(deadlines=3, cancels=1, duplicates=3, failures=2, races=2)
    reports = [walk(scenario, budget, runs=150, seed=7) for scenario in SCENARIOS]

    # Then every one ends with the invariants holding
    assert [r.failures for r in reports] == [[], [], []]


def test_exploration_reaches_every_pair_of_the_step_table_it_can():
    # Given the exhaustive explorations of every scenario
    covered = set()
    for scenario in range(len(SCENARIOS)):
        for budget in BUDGETS:
            covered |= exhaustive(scenario, budget).covered
    unreachable = {(s.value, k.__name__) for s, k in UNREACHABLE}

    # Then each (state, message) pair of the table is reached, or said to be unreachable
    # (a new state or message fails here until the exploration or the list covers it)
    table = {(s.value, k.__name__) for s, k in TABLE}
    assert covered & unreachable == set()
    assert covered | unreachable == table
    assert StepDeadlinePassed in HANDLES


# -- each fixed bug, put back: the exploration must find it -----------------------------------
def _nothing(state, message, now):
    return state, []


def _ignore(*pairs):
    return lambda mp: [mp.setitem(TABLE, pair, _nothing) for pair in pairs]


def _pending_overwritten(mp):
    """The saga store's ``$set`` of pending: a later step's messages replace unsent ones."""
    save = MemorySagaStore.save

    def overwriting(self, record, state, cause, out):
        saved = save(self, record, state, cause, out)
        if saved:
            current = self.sagas[record.saga_id]
            self.sagas[record.saga_id] = current.__class__(
                current.saga_id, current.version, state, current.handled, tuple(out)
            )
        return saved

    mp.setattr(MemorySagaStore, "save", overwriting)


def _release_adopting_the_winner(self, command):
    """``ReleaseStock`` that loses the reservation's version adopts what won ("reserved")."""
    lines = merge_lines(command.lines)
    reservation = self._load(command.order_id, lines)
    if reservation.status not in ("new", "reserved"):
        return self._adopt(reservation, command, lines)
    released = caused_by(
        StockReleased, command, order_id=command.order_id, lines=lines, reason=command.reason
    )
    held = {ln.sku for ln in lines} if reservation.status == "reserved" else None
    if self._claim(reservation, released, command):
        self._settle("released", command, lines, held)
        return "released"
    return self._adopt(self._load(command.order_id, lines), command, lines)


def _deadlines_from_occurred_at(mp):
    """The step's deadline counted from the causing message's ``occurred_at``."""
    step, start = runner.step, runner.start
    mp.setattr(runner, "step", lambda state, msg, now: step(state, msg, msg.occurred_at))
    mp.setattr(runner, "start", lambda event, secs, now: start(event, secs, event.occurred_at))


REVERTS = {
    "confirming ignores OrderCancelled": (_ignore((S.CONFIRMING, OrderCancelled)), ORDERINGS),
    "late PaymentCharged not refunded": (
        _ignore(*((s, PaymentCharged) for s in (S.RELEASING, S.CANCELLING, S.CANCELLED))),
        ORDERINGS,
    ),
    "pending replaced by a later step": (_pending_overwritten, ORDERINGS),
    "a losing ReleaseStock adopts the winner": (
        lambda mp: mp.setattr(Inventory, "release", _release_adopting_the_winner),
        RACES,
    ),
    "deadlines counted from occurred_at": (_deadlines_from_occurred_at, ORDERINGS),
}


@pytest.mark.parametrize("revert", REVERTS)
def test_the_exploration_finds_each_fixed_bug_when_its_fix_is_put_back(monkeypatch, revert):
    # Given the saga with one of its fixes reverted
    put_back, budget = REVERTS[revert]
    put_back(monkeypatch)

    # When the exploration runs (the in-stock order, the suite's budget)
    report = explore(SCENARIOS[0], budget)
    print(revert, report.summary())

    # Then some run breaks an invariant
    assert report.failures
