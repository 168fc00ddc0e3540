"""The queue prefix of this process: set once when the actors are bound, read everywhere."""

from __future__ import annotations

from workers.runtime import fanout

_prefix = ""


def set_prefix(prefix: str) -> None:
    global _prefix  # noqa: PLW0603 -- one broker binding per process, Dramatiq style
    _prefix = prefix


def get_prefix() -> str:
    return _prefix


def events_exchange() -> str:
    """The exchange that fans events out to their subscribers' queues, in this process."""
    return fanout.exchange_name(_prefix)
