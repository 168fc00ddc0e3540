"""A handler's result, kept for this thread's middleware instead of returned to Dramatiq.

Dramatiq warns on every message whose actor returns a value without its Results middleware;
the Replies middleware needs a command's result (its commit) to answer ``reply_to``.
"""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()


def keep(result: Any) -> None:
    """Keep ``result`` for the middleware that runs after the actor, in this thread."""
    _local.result = result


def take() -> Any:
    """The result kept by the actor that just ran in this thread (once), or ``None``."""
    result = getattr(_local, "result", None)
    _local.result = None
    return result
