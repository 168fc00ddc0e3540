"""Middleware: a body over the size limit fails for good before its actor runs."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from messages.errors import MessageTooLarge

log = structlog.get_logger("sagaworks.middleware")


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
