"""Queue figures for ``status``: ready messages from RabbitMQ, unacknowledged ones from its
management API (optional), or both from the in-process broker of the embedded demo.

The ready counts come from a passive ``queue_declare``: a queue no worker has declared yet
is *missing* (``None``). The unacknowledged counts are ``None``, shown as unknown with a
one-line note, when the management API is not reachable: the plugin is optional.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import dramatiq
import pika
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database

from readstore.db import Document
from workers.deadletters.store import DeadLetterStore
from workers.runtime.broker import BASE_QUEUES
from workers.runtime.settings import Settings


@dataclass
class QueueFigures:
    name: str
    ready: int | None = None
    unacked: int | None = None
    delayed: int | None = None
    xq: int | None = None
    dead_letters: int = 0
    missing: bool = False


def ready_counts(amqp_url: str, names: list[str]) -> dict[str, int | None]:
    """Ready messages per queue (passive declare); ``None`` for a queue that does not exist."""
    counts: dict[str, int | None] = {}
    with quiet_pika():
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            channel = connection.channel()
            for name in names:
                try:
                    counts[name] = channel.queue_declare(name, passive=True).method.message_count
                except pika.exceptions.ChannelClosedByBroker:
                    counts[name] = None
                    channel = connection.channel()
        finally:
            connection.close()
    return counts


@contextlib.contextmanager
def quiet_pika() -> Iterator[None]:
    """pika logs an error for every passive declare of a missing queue: the figures say it."""
    logger = logging.getLogger("pika")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def management_url(settings: Settings) -> str:
    if settings.rabbitmq_management_url:
        return settings.rabbitmq_management_url.get_secret_value()
    amqp = urllib.parse.urlsplit(settings.amqp() or "amqp://guest:guest@127.0.0.1:5672/")
    auth = f"{amqp.username or 'guest'}:{amqp.password or 'guest'}@"
    return f"http://{auth}{amqp.hostname or '127.0.0.1'}:15672"


def unacked_counts(settings: Settings) -> dict[str, int] | None:
    """Unacknowledged messages per queue from the management API; ``None`` if unreachable."""
    url = urllib.parse.urlsplit(management_url(settings))
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(settings.amqp() or "").path[1:]) or "/"
    path = f"/api/queues/{urllib.parse.quote(vhost, safe='')}?columns=name,messages_unacknowledged"
    request = urllib.request.Request(f"{url.scheme}://{url.hostname}:{url.port or 15672}{path}")
    token = base64.b64encode(f"{url.username or ''}:{url.password or ''}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            rows = json.load(response)
    except (OSError, ValueError):
        return None
    return {row["name"]: int(row.get("messages_unacknowledged") or 0) for row in rows}


def in_process_counts(
    broker: dramatiq.Broker, names: list[str]
) -> tuple[dict[str, int | None], dict[str, int] | None]:
    """Ready and in-flight messages per queue of the in-process broker (the embedded demo)."""
    if not isinstance(broker, StubBroker):
        return dict.fromkeys(names), None
    ready: dict[str, int | None] = {}
    held: dict[str, int] = {}
    for name in names:
        if name.endswith(".XQ"):
            ready[name] = 0  # no .XQ in process: the middleware records every failure
            continue
        queue = broker.queues.get(name)
        ready[name] = queue.qsize() if queue is not None else None
        held[name] = max(queue.unfinished_tasks - queue.qsize(), 0) if queue is not None else 0
    return ready, held


def queue_names(settings: Settings) -> list[str]:
    return sorted({settings.queue_prefix + base for base in BASE_QUEUES.values()})


def queue_counts(
    settings: Settings, broker: dramatiq.Broker | None = None
) -> tuple[dict[str, int | None], dict[str, int] | None]:
    """Ready messages per queue (and .DQ, .XQ), and unacknowledged ones (``None``: unknown):
    from RabbitMQ when it is configured, else from the in-process ``broker``."""
    names = [n + suffix for n in queue_names(settings) for suffix in ("", ".DQ", ".XQ")]
    if settings.amqp():
        return ready_counts(settings.amqp() or "", names), unacked_counts(settings)
    return in_process_counts(broker or dramatiq.get_broker(), names)


def queue_figures(
    settings: Settings,
    database: Database[Document],
    counts: tuple[dict[str, int | None], dict[str, int] | None],
) -> list[QueueFigures]:
    names = queue_names(settings)
    ready, unacked = counts
    dead = DeadLetterStore(database).counts_by_queue()

    def held(name: str) -> int | None:
        if unacked is None or ready[name] is None:
            return None
        return unacked.get(name, 0) + unacked.get(name + ".DQ", 0)

    return [
        QueueFigures(
            n,
            ready[n],
            held(n),
            ready[n + ".DQ"],
            ready[n + ".XQ"],
            dead.get(n, 0),
            missing=ready[n] is None,
        )
        for n in names
    ]
