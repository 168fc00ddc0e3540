"""The saga bench's ledger: when the work an order caused has gone quiet."""

from __future__ import annotations

import threading

from workers.runtime import periodic
from workers.workloads.instruments import Ledger


def _on_thread(name: str, work: object) -> None:
    thread = threading.Thread(target=work, name=name)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def test_a_periodic_tasks_polls_do_not_count_as_activity() -> None:
    """The sweeper polls once a second for ever; counting its polls, the bench's wait for
    quiet never ended (and its round trips were charged to the orders meanwhile)."""
    ledger = Ledger()
    periodic.register("saga-deadlines", lambda: None, 1.0)
    try:
        _on_thread("saga-deadlines", lambda: ledger.add(ledger.step(), round_trips=1))
        assert ledger.activity() == 0
        _on_thread("write-behind", lambda: ledger.add(ledger.step(), round_trips=1))
        assert ledger.activity() == 1
        assert ledger.totals().round_trips == 2  # still counted, only not waited on
    finally:
        periodic.unregister("saga-deadlines")
