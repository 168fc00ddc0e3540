"""Middleware: every log line of a message's processing carries its ids, actor, queue, retries."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware

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
