"""Logs carry ids, never message bodies or credentials."""

from __future__ import annotations

import logging
import sys

from dramatiq.errors import DecodeError

from workers.runtime.logs import HideMessageBodies, _redact


def record_with(exc: BaseException, msg: str = "Failed to decode message.") -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.LogRecord("dramatiq", logging.ERROR, __file__, 1, msg, (), sys.exc_info())


def test_an_undecodable_body_is_not_logged():
    # Given Dramatiq's log record of a body it could not decode
    record = record_with(DecodeError("failed to decode message 'card=4111 1111'", "x", None))

    # When it passes the filter
    assert HideMessageBodies().filter(record)

    # Then the line says what happened, without the body or its traceback
    text = logging.Formatter().format(record)
    assert "body is not logged" in text
    assert "4111" not in text


def test_messages_in_log_arguments_become_their_ids():
    # Given a record that formats a whole message into its text
    class Message:
        message_id, actor_name = "m-1", "handle_order_command"

        def __str__(self) -> str:
            return "handle_order_command({'card': '4111'})"

    record = logging.LogRecord(
        "dramatiq", logging.ERROR, __file__, 1, "failed %s", (Message(),), None
    )

    # When it passes the filter, then only the actor and id remain
    HideMessageBodies().filter(record)
    assert record.getMessage() == "failed handle_order_command[m-1]"


def test_urls_in_log_fields_are_redacted():
    event = _redact(None, "info", {"url": "amqp://app:s3cret@rabbit:5672/", "n": 1})
    assert event["url"] == "amqp://app:***@rabbit:5672/"
