"""Dramatiq's metrics middleware on a broker whose process never booted it."""

from __future__ import annotations

from typing import Any

import dramatiq

from workers.middleware.metrics import DramatiqMetrics


def test_messages_handled_before_the_metrics_were_set_up_are_not_an_error() -> None:
    # Given the metrics middleware, not yet set up (its process boot not seen)
    metrics = DramatiqMetrics()
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="q", actor_name="a", args=(), kwargs={}, options={"retries": 1}
    )

    # When every per-message hook runs, then the process boots
    for hook in (
        lambda: metrics.after_enqueue(None, message, 0),
        lambda: metrics.before_delay_message(None, message),
        lambda: metrics.before_process_message(None, message),
        lambda: metrics.after_process_message(None, message),
        lambda: metrics.after_skip_message(None, message),
        lambda: metrics.after_nack(None, message),
    ):
        hook()  # raises nothing: a message handled then is simply not counted

    # Then nothing is counted, and nothing is left waiting
    assert list(metrics.collect()) == []
    assert metrics.message_start_times == {}
