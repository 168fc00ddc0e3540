"""Broker outages in the logs: one warning when the connection drops, one when it is back.

While RabbitMQ is away every consumer thread, the ``.XQ`` ingester and pika itself would log
each attempt (about a thousand lines in twenty seconds). Those records are folded into the
outage instead: the first says ``broker.connection_lost``, the rest are counted, and the
first successful connection afterwards says ``broker.connection_restored`` with the
outage's length and how many lines it swallowed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import pika.exceptions
import structlog
from dramatiq.errors import BrokerConnectionError

log = structlog.get_logger("sagaworks.broker")

#: Errors that mean "the broker cannot be reached" (not a refusal of one message).
CONNECTION_ERRORS = (
    BrokerConnectionError,
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.StreamLostError,
    ConnectionError,
)
#: Dramatiq's and pika's per-attempt lines about a lost or refused connection.
NOISE = (
    "connection error",
    "Restarting consumer",
    "not in known tags",
    "Connection refused",
    "Stream connection lost",
    "Unexpected connection close",
    "connection_lost",
    "Socket failed to connect",
    "TCP Connection attempt failed",
    "AMQPConnector",
    "connection workflow",
    "_produce() failed",
    "_create_connection",
)
#: Dramatiq's lines about acks and nacks of deliveries a lost connection took with it: the
#: aftermath of an outage (they may come just after it), never the start of one.
AFTERMATH = ("not in known tags", "called on closed connection")


class Outage:
    """Whether this process has lost the broker, since when, and how much it kept quiet."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None
        self.swallowed = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def lost(self, reason: str) -> None:
        with self.lock:
            if self.since is not None:
                self.swallowed += 1
                return
            self.since, self.swallowed = time.monotonic(), 0
        log.warning("broker.connection_lost", reason=reason[:200])

    def swallow(self) -> None:
        """A line that belongs to an outage, logged as it ends: counted, not shown."""
        with self.lock:
            self.swallowed += 1

    def restored(self) -> None:
        if self.since is None:  # the common case: no lock on the hot path
            return
        with self.lock:
            since, swallowed, self.since = self.since, self.swallowed, None
        if since is not None:
            seconds = round(time.monotonic() - since, 1)
            log.warning("broker.connection_restored", outage_seconds=seconds, lines=swallowed)


OUTAGE = Outage()


class FoldConnectionNoise(logging.Filter):
    """A standard-library record about a lost broker connection is folded into the outage."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("pika", "dramatiq")) or record.levelno < logging.INFO:
            return True
        text = record.getMessage()
        if any(mark in text for mark in AFTERMATH):
            OUTAGE.swallow()
            return False
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, CONNECTION_ERRORS) or any(mark in text for mark in NOISE):
            OUTAGE.lost(text)
            return False
        return True


def fold_connection_errors(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog line logged while handling a broker connection error joins the outage."""
    if event.get("exc_info") or event.get("level") in ("error", "exception"):
        error = sys.exc_info()[1]
        if isinstance(error, CONNECTION_ERRORS):
            OUTAGE.lost(f"{event.get('event')}: {type(error).__name__}")
            raise structlog.DropEvent
    return event
