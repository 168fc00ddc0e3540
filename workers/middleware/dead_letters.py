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
from workers.deadletters.ingest import run_ingester
from workers.deadletters.parking import park
from workers.deadletters.record import REPLAY_OPTION, Failure, from_envelope, from_rejection
from workers.deadletters.store import DeadLetterStore
from workers.runtime.envelopes import Rejection
from workers.runtime.settings import Settings

log = structlog.get_logger("sagaworks.deadletters")


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
            self._record(failure, copy_in_xq=isinstance(broker, RabbitmqBroker))
        except Exception:
            log.exception("deadletter.record_failed", envelope_id=str(message.message_id)[:80])

    def after_envelope_rejected(
        self, broker: dramatiq.Broker, queue: str, body: bytes, rejection: Rejection
    ) -> None:
        """A delivery the broker's consumer refused (see ``GuardedConsumer``); it is in .XQ."""
        try:
            self._record(from_rejection(queue, body, rejection, source="consumer"), True)
        except Exception:
            log.exception("deadletter.record_failed", queue=queue)

    def _record(self, failure: Failure, copy_in_xq: bool) -> None:
        DeadLetterStore().record(failure, copy_in_xq=copy_in_xq)
        park(failure)
        log.warning(
            "deadletter.recorded",
            error=failure.error_type,
            attempts=failure.attempts,
            group=failure.fingerprint,
        )

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, RabbitmqBroker) or self.thread is not None:
            return
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
