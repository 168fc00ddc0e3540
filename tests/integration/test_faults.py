"""The fault-injection suite, short form (in ``make test``; ``make chaos`` is the long form):
each fault strikes a small batch of orders. It needs a private RabbitMQ node (root or the
``rabbitmq`` user): skipped where none can be started, failed in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_private_rabbit
from tests.fault_runs import run_schedule, table
from tests.faults import Fault, Stack

pytestmark = pytest.mark.rabbitmq

SCHEDULE = [
    Fault("kill_worker", 1),
    Fault("pause_store", 6),  # past the driver's 5 s timeouts and the saga's 4 s deadline
    Fault("kill_relay", 3),
    Fault("restart_broker", 3),
]


@pytest.mark.timeout(600)
def test_every_fault_is_survived_with_nothing_lost_doubled_or_falsely_dead(
    tmp_path: Path, database: object
) -> None:
    # Given a worker, a relay, a private broker and a file-backed store, as separate processes
    require_private_rabbit()
    with Stack.started(tmp_path) as stack:
        # When each fault strikes in the middle of a batch of orders
        outcomes = run_schedule(stack, SCHEDULE, orders=8, rate=10)

    # Then after each: every order terminal, invariants hold, read models agree, no dead
    # letter, no parked stream, status healthy
    print(table(outcomes))
    assert [o.fault for o in outcomes if not o.green] == [], (
        table(outcomes) + "\n" + "\n".join(f"{o.fault}: {o.notes}" for o in outcomes)
    )
