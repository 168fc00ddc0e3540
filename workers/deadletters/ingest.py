"""The ``.XQ`` ingester: every dead letter RabbitMQ holds is stored in MongoDB, then acked.

A message is acked in ``.XQ`` only after the store has it, so a MongoDB outage (or a crash of
the ingester) leaves it where it was. Copies of failures the middleware already recorded are
matched and acked without a second record; anything else (an undecodable body, a failure whose
record was lost) is recorded from the copy. A copy younger than the grace period is left for
the next pass: its middleware record may still be on its way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
import structlog
from dramatiq import Message as Envelope
from dramatiq.common import q_name
from dramatiq.errors import DecodeError

from workers.deadletters.parking import park
from workers.deadletters.record import Failure, from_body, from_envelope
from workers.deadletters.store import DeadLetterStore
from workers.runtime.broker import ACTORS, BASE_QUEUES
from workers.runtime.fanout import as_delivered
from workers.runtime.settings import Settings

log = structlog.get_logger("sagaworks.ingest")

UNRECORDED = (
    "found in .XQ with no failure record (the worker's record was lost): the final "
    "exception is unknown; the traceback, if any, is the previous attempt's"
)


@dataclass(frozen=True)
class Copy:
    """One message fetched from a ``.XQ`` queue, not yet acked."""

    tag: int
    queue: str
    body: bytes
    dead_at: datetime | None


def xq_queues(prefix: str) -> list[str]:
    """The dead-letter queue of every queue this deployment's actors consume."""
    return sorted({f"{prefix}{base}.XQ" for base in BASE_QUEUES.values()})


def dead_at(properties: Any) -> datetime | None:
    """When RabbitMQ dead-lettered the message (its ``x-death`` header), if it says."""
    deaths = (getattr(properties, "headers", None) or {}).get("x-death") or []
    moment = deaths[0].get("time") if deaths and isinstance(deaths[0], dict) else None
    if isinstance(moment, int | float):
        return datetime.fromtimestamp(moment, UTC)
    return moment if isinstance(moment, datetime) else None


class Ingester:
    def __init__(
        self,
        amqp_url: str,
        queues: list[str],
        grace: float = 2.0,
        batch: int = 500,
        store: DeadLetterStore | None = None,
    ) -> None:
        self.parameters = pika.URLParameters(amqp_url)
        self.queues = queues
        self.grace = timedelta(seconds=grace)
        self.batch = batch
        self.store = store

    def run_once(self) -> dict[str, int]:
        """Drain every ``.XQ`` queue; the number of messages stored or matched, per queue."""
        connection = pika.BlockingConnection(self.parameters)
        try:
            return {queue: self._drain(connection, queue) for queue in self.queues}
        finally:
            connection.close()

    def _drain(self, connection: pika.BlockingConnection, queue: str) -> int:
        channel = connection.channel()
        done = 0
        try:
            while True:
                copies, young = self._fetch(channel, queue)
                if copies:
                    self._store(copies)
                    channel.basic_ack(copies[-1].tag, multiple=True)
                    done += len(copies)
                if young is not None:
                    channel.basic_nack(young, requeue=True)
                if young is not None or len(copies) < self.batch:
                    return done
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:  # a queue not declared yet has nothing to ingest
                raise
            return done
        finally:
            if channel.is_open:
                channel.close()

    def _fetch(self, channel: Any, queue: str) -> tuple[list[Copy], int | None]:
        """Up to a batch of copies, stopping at the first one younger than the grace period."""
        copies: list[Copy] = []
        cutoff = datetime.now(UTC) - self.grace
        while len(copies) < self.batch:
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            at = dead_at(properties)
            if at is not None and at > cutoff:
                return copies, method.delivery_tag
            copies.append(Copy(method.delivery_tag, queue, body, at))
        return copies, None

    def _store(self, copies: list[Copy]) -> None:
        store = self.store or DeadLetterStore()
        # A fanned-out event's first delivery left the shared body: read it as its queue's.
        decoded = [(copy, _decode(as_delivered(copy.body, q_name(copy.queue)))) for copy in copies]
        claimed = store.claim_xq_copies([env.message_id for _, env in decoded if env is not None])
        failures: list[Failure] = []
        for copy, envelope in decoded:
            if envelope is None:
                failures.append(from_body(copy.queue, copy.body, copy.dead_at))
            elif claimed[envelope.message_id] > 0:
                claimed[envelope.message_id] -= 1
            else:
                failures.append(unrecorded(envelope))
        store.record_many(failures, copy_in_xq=False)
        for failure in failures:
            park(failure)
        if failures:
            log.warning("deadletter.ingested", recorded=len(failures), queue=copies[0].queue)


def _decode(body: bytes) -> Envelope[Any] | None:
    try:
        return Envelope.decode(body)
    except DecodeError:
        return None


def unrecorded(envelope: Envelope[Any]) -> Failure:
    """The failure of a decodable copy no middleware recorded (or whose record was lost)."""
    if envelope.actor_name not in {actor.actor_name for actor in ACTORS}:
        reason = f"no actor named {envelope.actor_name!r} in this deployment"
        return replace(from_envelope(envelope, None, "xq", reason), error_type="ActorNotFound")
    trace = envelope.options.get("traceback")
    return from_envelope(envelope, None, "xq", reason=UNRECORDED, trace=trace)


def ingester(settings: Settings) -> Ingester:
    if not settings.amqp():
        raise RuntimeError("set SAGAWORKS_AMQP_URL: the dead letters are in RabbitMQ")
    return Ingester(
        settings.amqp() or "",
        xq_queues(settings.queue_prefix),
        grace=settings.dead_letter_grace_seconds,
    )


def run_ingester(settings: Settings, stop: threading.Event) -> None:
    """The worker's periodic pass, until ``stop`` is set."""
    every = settings.dead_letter_ingest_seconds
    log.info("ingest.started", interval=every)
    while not stop.wait(every):
        try:
            ingester(settings).run_once()
        except Exception:
            log.exception("ingest.failed")  # the copies stay in .XQ; the next pass retries
