"""Middleware: record each dead-lettered message in the store, and drain ``.XQ`` in workers."""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from readstore.projection import set_releasing
from workers.deadletters import DeadLetterStore
from workers.failures import Failure, from_envelope
from workers.settings import Settings

log = structlog.get_logger("sagaworks.deadletters")

#: The option a replayed envelope carries: how many times it was replayed.
REPLAY_OPTION = "sagaworks_replay"


class DeadLetters(Middleware):
    """Records every nacked message with its final exception and traceback (``after_nack``).

    ``Retries`` puts no traceback on a permanent failure and the ``.XQ`` copy is the last
    delivered body, so this is the one place the final error is known. Its hooks must not
    raise (Dramatiq swallows ``after_*`` errors): a failure to record is logged, and the
    ``.XQ`` ingester records the message later from its copy.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        # A replayed event releases its stream if a projection parked it.
        set_releasing(bool(message.options.get(REPLAY_OPTION)))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        set_releasing(False)
        # Runs before Retries re-enqueues the message, so the option travels with the retry.
        if exception is not None:
            message.options.setdefault("first_failed_at", int(time.time() * 1000))

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        set_releasing(False)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            failure = from_envelope(message, message._exception, source="middleware")
            DeadLetterStore().record(failure, copy_in_xq=isinstance(broker, RabbitmqBroker))
            park(failure)
            log.warning(
                "deadletter.recorded",
                error=failure.error_type,
                attempts=failure.attempts,
                group=failure.fingerprint,
            )
        except Exception:
            log.exception("deadletter.record_failed", envelope_id=message.message_id)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, RabbitmqBroker) or self.thread is not None:
            return
        from workers.ingest import run_ingester  # noqa: PLC0415 -- pika only in RabbitMQ workers

        self.stop.clear()
        self.thread = threading.Thread(
            target=run_ingester, args=(self.settings, self.stop), name="xq-ingester", daemon=True
        )
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None


def park(failure: Failure) -> None:
    """A projection's event failed for good: park its stream for that projection."""
    from workers.projections import PROJECTIONS  # noqa: PLC0415 -- the actor modules import us

    message = failure.message or {}
    stream_id, version = message.get("stream_id"), message.get("stream_version")
    if not isinstance(stream_id, str) or not isinstance(version, int):
        return
    for projection, actor in PROJECTIONS.values():
        if actor.actor_name == failure.actor:
            projection().park(stream_id, version, failure.key)
            log.warning("projection.parked", projection=projection.name, stream_id=stream_id)
