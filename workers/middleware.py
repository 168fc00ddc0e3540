"""Middleware: bind the log context once per message, and refuse oversized bodies."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware, Retries

from workers.errors import MessageTooLarge

log = structlog.get_logger("sagaworks.middleware")


class LogContext(Middleware):
    """Every log line of a message's processing carries its ids, actor, queue and retries."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        payload = message.args[0] if len(message.args) == 1 else None
        domain = payload if isinstance(payload, dict) else {}
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            message_id=str(domain.get("message_id", message.message_id)),
            correlation_id=str(domain.get("correlation_id", "")) or None,
            message_type=domain.get("type"),
            envelope_id=message.message_id,
            actor=message.actor_name,
            queue=message.queue_name,
            retries=message.options.get("retries", 0),
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            log.warning(
                "message.failed",
                error=type(exception).__name__,
                reason=str(exception)[:500],
                final=bool(message.failed),
            )
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        structlog.contextvars.clear_contextvars()


class MessageSizeLimit(Middleware):
    """A body over ``max_bytes`` fails for good before its actor runs (no retries).

    Dramatiq swallows errors raised by ``before_*`` hooks, so the message is failed and its
    exception stuffed instead: the worker skips the actor and nacks it to the dead letters.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        size = len(message.encode())
        if size > self.max_bytes:
            log.warning("message.too_large", size=size, limit=self.max_bytes)
            message.fail()
            message.stuff_exception(
                MessageTooLarge(f"message body is {size} bytes, over the {self.max_bytes} limit")
            )


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
