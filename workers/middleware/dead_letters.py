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


#: On a message: how many times the worker tried to nack it (more than one: the first failed).
NACK_TRIES = "_sagaworks_nack_tries"
#: On a message: it was delivered again while the dead-letter store holds a record of it.
RECORDED = "_sagaworks_recorded"


class DeadLetters(Middleware):
    """Records every message the broker dead-lettered, with its final exception and traceback.

    ``Retries`` puts no traceback on a permanent failure and the ``.XQ`` copy is the last
    delivered body, so ``after_nack`` is the one place the final error is known. But Dramatiq
    fires ``after_nack`` even when the nack never reached the broker: a nack on a dead
    connection raises, Dramatiq retries it, the delivery tag is gone ("not in known tags")
    and the retry returns normally. RabbitMQ then redelivers the message, so such a failure
    is not recorded (nor its stream parked). And a message that is processed after all (a
    redelivery, a replay) resolves its record, so only what is really dead counts.

    Its hooks must not raise (Dramatiq swallows ``after_*`` errors): a failure to record is
    logged, and the ``.XQ`` ingester records the message later from its copy.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        # A replayed event, or a recorded one delivered again, releases its parked stream.
        recorded = bool(getattr(message, "redelivered", False)) and self._recorded(message)
        setattr(message, RECORDED, recorded)
        set_releasing(recorded or bool(message.options.get(REPLAY_OPTION)))

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
        elif getattr(message, RECORDED, False) or message.options.get(REPLAY_OPTION):
            self._resolve(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        set_releasing(False)

    def before_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        setattr(message, NACK_TRIES, getattr(message, NACK_TRIES, 0) + 1)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        if getattr(message, NACK_TRIES, 1) > 1:
            # The first nack failed on a lost connection: the broker never dead-lettered the
            # message and will deliver it again.
            log.info("deadletter.nack_lost", envelope_id=message.message_id)
            return
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
            cause=failure.cause,
            attempts=failure.attempts,
            group=failure.fingerprint,
        )

    def _recorded(self, message: Any) -> bool:
        try:
            return DeadLetterStore().is_recorded(message.message_id)
        except Exception:  # the store is away: the message runs as any other
            log.warning("deadletter.lookup_failed", envelope_id=message.message_id)
            return False

    def _resolve(self, message: Any) -> None:
        how = "replayed" if message.options.get(REPLAY_OPTION) else "redelivered"
        try:
            if DeadLetterStore().resolve(message.message_id, f"processed when {how}"):
                log.info("deadletter.resolved", envelope_id=message.message_id, how=how)
        except Exception:
            log.warning("deadletter.resolve_failed", envelope_id=message.message_id)

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
