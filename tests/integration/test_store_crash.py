"""The store SIGKILLed mid-run and restarted: with durability on, the audit stays green.

The short form of ``python -m workers.workloads.crash`` (500 orders, 6 kills: BENCHMARKS.md):
a file-backed SecantusDB as its own process, a ``sagaworks worker`` and a ``sagaworks relay``
process, the real RabbitMQ under a queue prefix of its own.
"""

import pytest

from tests.conftest import require_rabbitmq
from workers.workloads import crash


@pytest.mark.rabbitmq
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_store_killed_mid_run_loses_no_acknowledged_write():
    # Given the service running against a file-backed store, durability on
    require_rabbitmq()

    # When 40 orders arrive at 5/s while the store is killed twice and restarted
    summary = crash.run(orders=40, rate=5.0, kills=2, durable=True)

    # Then every order placed is in the store and ended, and the audit is green
    assert summary["kills"] == 2
    assert summary["quiet"], summary
    assert summary["orders_in_store"] == 40
    assert summary["orders_terminal"] == 40
    assert summary["audit_exit_code"] == 0, summary["audit"]
    assert summary["audit"]["broken"] == []
    assert summary["audit"]["checked"]["orders"] == 40
