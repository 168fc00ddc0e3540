"""The ``.XQ`` ingester: every dead letter RabbitMQ holds is stored in MongoDB, then acked.

A message is acked in ``.XQ`` only after the store has it, so a MongoDB outage (or a crash of
the ingester) leaves it where it was. Copies of failures already recorded (by the middleware,
or by the consumer that refused the envelope) are matched and acked without a second record;
anything else is recorded from the copy. Each copy is screened, keyed and stored on its own:
a malformed one is recorded as refused (or, if even that fails, left in ``.XQ``) and never
stops the others. A copy younger than the grace period is left for the next pass: its record
may still be on its way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq import Message as Envelope
from pymongo.errors import BulkWriteError

from workers.deadletters.parking import park
from workers.deadletters.record import (
    Failure,
    from_body,
    from_envelope,
    from_rejection,
    queue_of,
)
from workers.deadletters.store import DeadLetterStore
from workers.runtime.broker import ACTORS, BASE_QUEUES
from workers.runtime.consumer import screen_delivery
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
    #: The queue it was dead-lettered from (``q`` or ``q.DQ``) and the exchange it was
    #: published to, from RabbitMQ's ``x-death`` header.
    origin: str = ""
    exchange: str = ""


def xq_queues(prefix: str) -> list[str]:
    """The dead-letter queue of every queue this deployment's actors consume."""
    return sorted({f"{prefix}{base}.XQ" for base in BASE_QUEUES.values()})


def death(properties: Any) -> dict[str, Any]:
    """RabbitMQ's latest ``x-death`` record of a dead-lettered message, if any."""
    headers = getattr(properties, "headers", None)
    deaths = headers.get("x-death") if isinstance(headers, dict) else None
    latest = deaths[0] if isinstance(deaths, list) and deaths else None
    return latest if isinstance(latest, dict) else {}


def dead_at(properties: Any) -> datetime | None:
    """When RabbitMQ dead-lettered the message (its ``x-death`` header), if it says."""
    moment = death(properties).get("time")
    if isinstance(moment, int | float):
        return datetime.fromtimestamp(moment, UTC)
    return moment if isinstance(moment, datetime) else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def fetched(tag: int, queue: str, properties: Any, body: bytes) -> Copy:
    record = death(properties)
    origin = _text(record.get("queue")) or queue_of(queue)
    return Copy(tag, queue, body, dead_at(properties), origin, _text(record.get("exchange")))


class Ingester:
    def __init__(
        self,
        amqp_url: str,
        queues: list[str],
        *,
        grace: float = 2.0,
        batch: int = 500,
        store: DeadLetterStore | None = None,
        max_bytes: int = 1024 * 1024,
    ) -> None:
        self.parameters = pika.URLParameters(amqp_url)
        self.queues = queues
        self.grace = timedelta(seconds=grace)
        self.batch = batch
        self.store = store
        self.max_bytes = max_bytes

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
                stored = self._store(copies) if copies else []
                for copy in stored:
                    channel.basic_ack(copy.tag)
                done += len(stored)
                if young is not None:
                    channel.basic_nack(young, requeue=True)
                if young is not None or len(copies) < self.batch or len(stored) < len(copies):
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
            copies.append(fetched(method.delivery_tag, queue, properties, body))
        return copies, None

    def _store(self, copies: list[Copy]) -> list[Copy]:
        """Record the copies no record covers yet; the copies now safe to ack."""
        store = self.store or DeadLetterStore()
        failures = [self.failure_of(copy) for copy in copies]
        claimed = store.claim_xq_copies([f.key for f in failures])
        new: list[tuple[Copy, Failure]] = []
        for copy, failure in zip(copies, failures, strict=True):
            if claimed[failure.key] > 0:
                claimed[failure.key] -= 1
            else:
                new.append((copy, failure))
        lost = self._record(store, new)
        if len(new) > len(lost):
            log.warning("deadletter.ingested", recorded=len(new) - len(lost), queue=copies[0].queue)
        return [copy for copy in copies if copy.tag not in lost]

    def failure_of(self, copy: Copy) -> Failure:
        """What the copy's failure was: refused at the door, or failed in its actor."""
        actor_queues = {actor.actor_name: actor.queue_name for actor in ACTORS}
        actor_queues.update({n: a.queue_name for n, a in dramatiq.get_broker().actors.items()})
        # A fanned-out event's first delivery left the shared body: read it as its queue's.
        body = as_delivered(copy.body, copy.origin)
        rejection = screen_delivery(copy.origin, copy.exchange, body, self.max_bytes, actor_queues)
        if rejection is not None:
            return from_rejection(copy.origin, body, rejection, "xq", copy.dead_at)
        try:
            return unrecorded(Envelope.decode(body))
        except Exception:  # screened, so decodable; kept safe all the same
            return from_body(copy.queue, copy.body, copy.dead_at)

    def _record(self, store: DeadLetterStore, new: list[tuple[Copy, Failure]]) -> set[int]:
        """Store ``new`` in one write; the tags of copies that could not be stored at all."""
        failed: set[int] = set()
        try:
            store.record_many([f for _, f in new], copy_in_xq=False)
        except BulkWriteError as exc:
            indexes = {error["index"] for error in exc.details.get("writeErrors", [])}
            failed = {new[i][0].tag for i in indexes if not self._fallback(store, new[i][0])}
        for copy, failure in new:
            if copy.tag not in failed:
                park(failure)
        return failed

    def _fallback(self, store: DeadLetterStore, copy: Copy) -> bool:
        """A copy whose record was refused is stored as raw bytes; False if even that fails."""
        try:
            store.record(from_body(copy.queue, copy.body, copy.dead_at), copy_in_xq=False)
        except Exception:
            log.exception("deadletter.ingest_failed", queue=copy.queue)
            return False
        return True


def unrecorded(envelope: Envelope[Any]) -> Failure:
    """The failure of a copy no middleware recorded (or whose record was lost): its final
    exception is unknown, so it never overwrites a cause already recorded."""
    trace = envelope.options.get("traceback")
    failure = from_envelope(envelope, None, "xq", reason=UNRECORDED, trace=trace)
    return replace(failure, known=False)


def ingester(settings: Settings) -> Ingester:
    if not settings.amqp():
        raise RuntimeError("set SAGAWORKS_AMQP_URL: the dead letters are in RabbitMQ")
    return Ingester(
        settings.amqp() or "",
        xq_queues(settings.queue_prefix),
        grace=settings.dead_letter_grace_seconds,
        max_bytes=settings.max_message_bytes,
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
