"""Prometheus metrics for the ``sagaworks status`` figures, computed at scrape time."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
from dramatiq.middleware.prometheus import DB_PATH
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from workers.middleware.metrics import DramatiqMetrics
from workers.ops.status import Status


class StatusCollector:
    """Yields queue depths, dead letters, projection lag and sagas by state on each scrape."""

    def __init__(self, measure: Callable[[], Status]) -> None:
        self.measure = measure

    def describe(self) -> list[Metric]:
        return []  # figures are computed at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        result = self.measure()
        yield from queue_metrics(result)
        yield from projection_metrics(result)
        sagas = GaugeMetricFamily("sagaworks_sagas", "Sagas by state", labels=["state"])
        for state, count in sorted(result.sagas.items()):
            sagas.add_metric([state], count)
        yield sagas
        overdue = GaugeMetricFamily(
            "sagaworks_sagas_overdue", "Running sagas past their step deadline (stuck)"
        )
        overdue.add_metric([], result.overdue_sagas)
        yield overdue
        healthy = GaugeMetricFamily("sagaworks_healthy", "1 when nothing needs attention")
        healthy.add_metric([], 0 if result.attention else 1)
        yield healthy


def queue_metrics(result: Status) -> Iterator[Metric]:
    help_texts = {
        "ready": "Messages ready in the queue",
        "unacked": "Messages delivered, not yet acknowledged (management API)",
        "delayed": "Messages in the delay queue (.DQ)",
        "xq": "Messages in the dead-letter queue (.XQ), not yet ingested",
        "dead_letters": "Dead letters in the store",
    }
    for key, text in help_texts.items():
        family = GaugeMetricFamily(f"sagaworks_queue_{key}", text, labels=["queue"])
        for queue in result.queues:
            value = getattr(queue, key)
            if value is not None:
                family.add_metric([queue.name], value)
        yield family


def projection_metrics(result: Status) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "sagaworks_projection_lag", "Events committed, not yet applied", labels=["projection"]
    )
    parked = GaugeMetricFamily(
        "sagaworks_projection_parked_streams", "Streams parked", labels=["projection"]
    )
    for name, figures in result.projections.items():
        lag.add_metric([name], figures["lag"])
        parked.add_metric([name], figures["parked_streams"])
    yield lag
    yield parked


class DramatiqCollector:
    """Dramatiq's own metrics: of the in-process workers on ``broker`` when it has any, else
    those the worker processes of this host wrote to Dramatiq's shared directory."""

    def __init__(self, broker: dramatiq.Broker | None, path: str = DB_PATH) -> None:
        self.broker = broker
        self.path = path

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        middleware = [m for m in getattr(self.broker, "middleware", []) if _booted(m)]
        if middleware:
            yield from middleware[0].collect()
        elif os.path.isdir(self.path) and any(f.endswith(".db") for f in os.listdir(self.path)):
            yield from MultiProcessCollector(None, self.path).collect()  # type: ignore[no-untyped-call]


def _booted(middleware: Any) -> bool:
    return isinstance(middleware, DramatiqMetrics) and hasattr(middleware, "total_messages")


def exposition(measure: Callable[[], Status], broker: dramatiq.Broker | None = None) -> bytes:
    """The metrics in Prometheus' text format: ours, then Dramatiq's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(measure))
    registry.register(DramatiqCollector(broker))
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "DramatiqCollector", "StatusCollector", "exposition"]
