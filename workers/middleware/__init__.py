"""Middleware, one per module; ``default_middleware`` assembles the stack every broker gets."""

from __future__ import annotations

from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from workers.middleware.dead_letters import DeadLetters
from workers.middleware.faults import FaultInjection
from workers.middleware.log_context import LogContext
from workers.middleware.metrics import DramatiqMetrics
from workers.middleware.periodic import Periodic
from workers.middleware.replies import Replies
from workers.middleware.retries import GuardedRetries
from workers.middleware.size_limit import MessageSizeLimit
from workers.runtime.settings import Settings


def default_middleware(settings: Settings) -> list[Middleware]:
    """The stack, in order: Dramatiq's own, then ours; fault injection only when asked for."""
    stack: list[Middleware] = [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        GuardedRetries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
        ),
        CurrentMessage(),
        LogContext(),
        MessageSizeLimit(settings.max_message_bytes),
        Replies(),  # before DeadLetters: a dead letter is recorded before it is answered
        DeadLetters(settings),
        Periodic(),
    ]
    if settings.dramatiq_metrics:
        stack.append(DramatiqMetrics())
    if settings.fault_failure_rate > 0 or settings.fault_duplicate_rate > 0:
        stack.append(FaultInjection.from_settings(settings))
    return stack


__all__ = ["default_middleware"]
