"""structlog setup: JSON lines in production, console in a terminal; ids, never payloads.

Every record is written whole: its text and its newline in one ``write`` under one lock.
A Dramatiq worker process's standard error is a pipe its parent relays chunk by chunk, so a
record written in two pieces (``print`` writes the newline apart) could be relayed with
another process's record in between: two records on one line, which a log shipper drops.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

import structlog
from dramatiq.errors import DecodeError

from readstore.db import redact_url
from workers.runtime.outage import FoldConnectionNoise, fold_connection_errors


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and route the standard library's records (Dramatiq's) through it."""
    renderer: Any
    if fmt == "console" or (fmt == "auto" and sys.stderr.isatty()):
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            fold_connection_errors,
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_line_logger,
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    handler.addFilter(HideMessageBodies())  # first: nothing after it sees a message body
    handler.addFilter(FoldConnectionNoise())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)] + [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a warning is a record too, not a stray line
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("pymongo").setLevel(logging.WARNING)


_WRITE_LOCK = threading.RLock()
#: Lines logged by this thread while it was writing one (a signal handler's), per thread.
_HELD = threading.local()


def write_line(text: str) -> None:
    """One record on the *current* standard error (a test runner may replace it), whole.

    A record logged while this thread is already writing one (from a signal handler:
    Dramatiq logs from its SIGTERM handler) is held and written right after the line being
    written, not into its middle and not by waiting on this thread's own lock: a worker that
    did so hung on SIGTERM for good."""
    held: list[str] | None = getattr(_HELD, "lines", None)
    if held is not None:
        held.append(text)
        return
    with _WRITE_LOCK:
        _HELD.lines = lines = [text]
        try:
            while lines:
                stream = sys.stderr
                stream.write(lines.pop(0) + "\n")
                stream.flush()
        finally:
            _HELD.lines = None


class LineLogger:
    """structlog's logger: each rendered record through ``write_line``."""

    def msg(self, message: str) -> None:
        write_line(message)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _line_logger(*_: Any) -> LineLogger:
    return LineLogger()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The standard library's records (Dramatiq's, pika's), through ``write_line``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_line(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and "://" in value:
            event[key] = redact_url(value)
    return event


class HideMessageBodies(logging.Filter):
    """Dramatiq formats whole messages (payloads included) into its log lines: log ids only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_identify(a) for a in record.args)
        if record.exc_info and isinstance(record.exc_info[1], DecodeError):
            # Its message and its cause quote the undecodable body: say what, not what it held.
            record.msg, record.args = f"{record.getMessage()} (the body is not logged)", ()
            record.exc_info, record.exc_text = None, None
        return True


def _identify(arg: Any) -> Any:
    message_id = getattr(arg, "message_id", None)
    actor_name = getattr(arg, "actor_name", None)
    if message_id is not None and actor_name is not None:
        return f"{actor_name}[{message_id}]"
    return arg


log = structlog.get_logger("sagaworks")
