"""A broker outage logs one warning when the connection drops and one when it is back."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pika.exceptions
import pytest
import structlog

from workers.runtime import outage
from workers.runtime.logs import configure_logging


@pytest.fixture
def captured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[pytest.CaptureFixture[str]]:
    monkeypatch.setattr(outage, "OUTAGE", outage.Outage())
    configure_logging("INFO", "json")
    yield capsys
    logging.getLogger().handlers[:] = []


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_an_outage_is_one_warning_down_and_one_back_whatever_the_threads_log(
    captured: pytest.CaptureFixture[str],
) -> None:
    # Given a worker whose consumer threads, pika and its own code all see the broker gone
    consumer = logging.getLogger("dramatiq.worker.ConsumerThread(q)")
    pika_log = logging.getLogger("pika.adapters.blocking_connection")
    mine = structlog.get_logger("sagaworks.ingest")

    def noisy() -> None:
        for _ in range(50):
            consumer.critical("Consumer encountered a connection error: %s", "refused")
            consumer.info("Restarting consumer in %0.2f seconds.", 3.0)
            pika_log.error("Unexpected connection close detected: %r", "StreamLostError")
            try:
                raise pika.exceptions.AMQPConnectionError("Connection refused")
            except pika.exceptions.AMQPConnectionError:
                mine.exception("ingest.failed")

    # When eight threads log through the outage, and then a consumer connects again
    threads = [threading.Thread(target=noisy) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outage.OUTAGE.restored()
    consumer.warning("Failed to ack message: not in known tags.")  # a late ack of a lost tag

    # Then the log holds one line for the loss and one for the return, with its length (of
    # the sources the outage runs through: a write-behind thread left by an earlier test in
    # this process may log about its own closed client meanwhile)
    logged = [line for line in lines(captured) if not str(line["event"]).startswith("writebehind.")]
    assert [line["event"] for line in logged] == [
        "broker.connection_lost",
        "broker.connection_restored",
    ]
    assert logged[1]["outage_seconds"] >= 0 and logged[1]["lines"] == 8 * 50 * 4 - 1


def test_other_errors_are_still_logged_and_no_outage_is_announced(
    captured: pytest.CaptureFixture[str],
) -> None:
    # Given errors unrelated to the broker connection
    logging.getLogger("dramatiq.worker").error("Failed to process message %s.", "m-1")
    try:
        raise ValueError("bad input")
    except ValueError:
        structlog.get_logger("sagaworks").exception("command.failed")

    # Then they are logged as they were, and nothing says the broker was lost
    events = [line["event"] for line in lines(captured)]
    assert outage.OUTAGE.down is False
    assert events == ["Failed to process message m-1.", "command.failed"]
