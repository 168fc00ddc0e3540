"""Dramatiq's own Prometheus middleware (messages, errors, retries, durations per actor), tamed.

Three changes to Dramatiq's: no exposition server of its own (it would listen on every
interface; the console's ``/metrics`` and ``sagaworks status --serve`` serve these figures),
and setting up its metrics leaves this process's environment as it was, so an in-process
worker (the demo, the tests) keeps its counters in memory. Worker processes started by
``sagaworks worker`` write them to Dramatiq's shared directory, read at scrape time. And a
message handled before the process set the metrics up (a broker whose process boot it did
not see) is not counted, where Dramatiq's logs an error for every hook of every message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
from dramatiq.middleware.prometheus import DB_PATH, Prometheus
from prometheus_client.core import Metric

ENVIRONMENT = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
#: The middleware's metric attributes, as Dramatiq names them.
METRICS = (
    "total_messages",
    "total_errored_messages",
    "total_retried_messages",
    "total_rejected_messages",
    "inprogress_messages",
    "inprogress_delayed_messages",
    "message_durations",
)


class DramatiqMetrics(Prometheus):
    @property
    def forks(self) -> list[Callable[[], Any]]:
        return []

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        before = {name: os.environ.get(name) for name in ENVIRONMENT}
        super().after_process_boot(broker)  # type: ignore[no-untyped-call]
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _ready(self) -> bool:
        return getattr(self, "message_durations", None) is not None

    def after_nack(self, broker: Any, message: Any) -> None:
        if self._ready():
            super().after_nack(broker, message)  # type: ignore[no-untyped-call]

    def after_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
        if self._ready():
            super().after_enqueue(broker, message, delay)  # type: ignore[no-untyped-call]

    def before_delay_message(self, broker: Any, message: Any) -> None:
        if self._ready():
            super().before_delay_message(broker, message)  # type: ignore[no-untyped-call]

    def before_process_message(self, broker: Any, message: Any) -> None:
        if self._ready():
            super().before_process_message(broker, message)  # type: ignore[no-untyped-call]

    def after_process_message(
        self,
        broker: Any,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if self._ready():
            super().after_process_message(  # type: ignore[no-untyped-call]
                broker, message, result=result, exception=exception
            )

    after_skip_message = after_process_message

    def collect(self) -> Iterator[Metric]:
        """This process's figures (none before the process booted)."""
        for name in METRICS:
            metric = getattr(self, name, None)
            if metric is not None:
                yield from metric.collect()


def worker_environment() -> dict[str, str]:
    """What ``sagaworks worker`` sets so its processes share their figures through files."""
    return dict.fromkeys(ENVIRONMENT, DB_PATH)
