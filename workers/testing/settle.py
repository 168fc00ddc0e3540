"""Wait until a broker is quiet: every declared queue empty and the worker idle."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker


def settle(broker: dramatiq.Broker, worker: Worker, timeout: float = 60.0) -> None:
    """Wait until every declared queue is empty and the worker idle, through cascades
    (a command's events are enqueued while it is processed) and retries."""
    deadline = time.monotonic() + timeout
    quiet_passes = 0
    while quiet_passes < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the broker did not settle in time")
        busy = _drain(broker, timeout)
        worker.join()
        quiet_passes = 0 if busy else quiet_passes + 1
        if busy:
            time.sleep(0.05)


def _drain(broker: dramatiq.Broker, timeout: float) -> bool:
    """Join every queue with work in it; whether there was any."""
    busy = False
    for queue in sorted(broker.get_declared_queues()):
        if not _pending(broker, queue):
            continue
        busy = True
        if isinstance(broker, StubBroker):
            broker.join(queue, timeout=int(timeout * 1000), fail_fast=False)
        else:
            # RabbitmqBroker.join polls the ready count: ask for several quiet polls in a row.
            rabbitmq: Any = broker
            rabbitmq.join(queue, min_successes=5, idle_time=50, timeout=int(timeout * 1000))
    return busy


def _pending(broker: dramatiq.Broker, queue: str) -> bool:
    if isinstance(broker, StubBroker):
        delayed = broker.queues.get(f"{queue}.DQ")
        return broker.queues[queue].unfinished_tasks > 0 or bool(
            delayed and delayed.unfinished_tasks
        )
    counts: Any = broker.get_queue_message_counts(queue)  # type: ignore[attr-defined]
    return bool(counts[0] or counts[1])
