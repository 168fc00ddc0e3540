"""A record logged while this thread is already writing one (a signal handler's: Dramatiq
logs "Stopping worker process..." from its SIGTERM handler) neither deadlocks nor cuts the
line being written: it is written whole, right after it."""

from __future__ import annotations

import sys
import threading

import pytest

from workers.runtime import logs


class Interrupted:
    """A standard error whose first write is interrupted by a handler that logs a line."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.interrupted = False

    def write(self, text: str) -> None:
        if not self.interrupted:
            self.interrupted = True
            logs.write_line("from the signal handler")  # as if SIGTERM came mid-write
        self.written.append(text)

    def flush(self) -> None:
        pass


def test_a_line_logged_while_one_is_written_waits_for_it_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = Interrupted()
    monkeypatch.setattr(sys, "stderr", stream)
    done = threading.Event()

    def log() -> None:
        logs.write_line("the line being written")
        done.set()

    writer = threading.Thread(target=log, daemon=True)
    writer.start()
    # Then the write finishes (it deadlocked on its own lock), each line whole, in order
    assert done.wait(5), "write_line deadlocked on a line logged while it wrote one"
    assert stream.written == ["the line being written\n", "from the signal handler\n"]
