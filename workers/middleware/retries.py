"""Middleware: Dramatiq's retries, guarded so that a retry which cannot be enqueued is not lost."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Retries

log = structlog.get_logger("sagaworks.middleware")


class GuardedRetries(Retries):
    """Dramatiq's retries, except that a retry which cannot be re-enqueued is not lost.

    Dramatiq acks the original even when re-enqueueing its retry fails (a broker hiccup):
    the message would vanish. Here the original is failed instead, so it is nacked into
    ``.XQ`` and the dead-letter store — or, if the broker is gone, redelivered.
    """

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        try:
            super().after_process_message(  # type: ignore[no-untyped-call]
                broker, message, result=result, exception=exception
            )
        except Exception as exc:
            if exception is not None and not message.failed:
                log.error("retry.enqueue_failed", error=type(exc).__name__, reason=str(exc)[:300])
                message.fail()
            raise
