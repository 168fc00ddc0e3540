"""Middleware: answer a command that names a ``reply_to`` with its ``Outcome`` (AMQP RPC).

A publisher sets the AMQP ``reply_to`` (its own queue, or ``amq.rabbitmq.reply-to``) and
``correlation_id`` properties; the consumer copies them into the envelope's options (see
``workers.runtime.replyto``), so retries and replays keep them. The answer is sent once the
command's fate is final: on success (``committed``/``duplicate``, with the consistency
token), or when it is nacked to the dead letters (``rejected`` for a business rule,
``dead_lettered`` for anything else). A retry in between sends nothing. The answer goes to
the default exchange, routing key = ``reply_to``, with the command's ``correlation_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from messages.errors import CommandRejected
from messages.outcomes import Outcome
from workers.runtime import results
from workers.runtime.replyto import REPLY_CORRELATION, REPLY_TO
from workers.write.commands import CommandResult

log = structlog.get_logger("sagaworks.replies")

#: ``send(broker, reply_to, correlation_id, body)``: publish one answer.
Send = Callable[[dramatiq.Broker, str, str, bytes], None]


def publish_reply(broker: dramatiq.Broker, reply_to: str, correlation_id: str, body: bytes) -> None:
    """Publish on the broker's channel for this thread (confirmed; an absent queue drops it)."""
    if not isinstance(broker, RabbitmqBroker):
        return
    properties = pika.BasicProperties(
        correlation_id=correlation_id, content_type="application/json", type="Outcome"
    )
    try:
        broker.channel.basic_publish("", reply_to, body, properties)
    except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
        del broker.connection  # the next answer from this thread opens a fresh one
        raise


class Replies(Middleware):
    """Sends each command's ``Outcome`` to its ``reply_to``, once its fate is final."""

    def __init__(self, send: Send = publish_reply) -> None:
        self.send = send

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        kept = results.take()  # every message: a result is never left for the next one
        if exception is None and not message.failed and message.options.get(REPLY_TO):
            self._answer(broker, message, succeeded(message, kept if result is None else result))

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.options.get(REPLY_TO):
            self._answer(broker, message, failed(message, message._exception))

    def _answer(self, broker: dramatiq.Broker, message: Any, outcome: Outcome) -> None:
        correlation = message.options.get(REPLY_CORRELATION) or message.message_id
        try:
            self.send(
                broker, message.options[REPLY_TO], correlation, outcome.model_dump_json().encode()
            )
        except Exception as exc:  # an answer lost must not fail the command: it is logged
            log.warning("reply.failed", error=type(exc).__name__, outcome=outcome.outcome)
            return
        log.info("reply.sent", outcome=outcome.outcome)


def _ids(message: Any) -> dict[str, Any]:
    domain = message.args[0] if len(message.args) == 1 and isinstance(message.args[0], dict) else {}
    type_name, message_id = domain.get("type"), domain.get("message_id")
    return {
        "envelope_id": message.message_id,
        "type": type_name if isinstance(type_name, str) else None,
        "message_id": message_id if isinstance(message_id, str) else None,
    }


def succeeded(message: Any, result: Any) -> Outcome:
    """``committed`` or ``duplicate``, with the token when the handler returned one."""
    if not isinstance(result, CommandResult):
        return Outcome(outcome="committed", **_ids(message))
    token = result.token
    return Outcome(
        outcome="duplicate" if result.duplicate else "committed",
        stream_id=token.stream_id,
        version=token.version,
        token=str(token),
        appended=result.committed and not result.duplicate,
        **_ids(message),
    )


def failed(message: Any, exception: BaseException | None) -> Outcome:
    """``rejected`` (a business rule said no) or ``dead_lettered`` (anything else)."""
    kind = "rejected" if isinstance(exception, CommandRejected) else "dead_lettered"
    error = type(exception).__name__ if exception is not None else None
    reason = str(exception)[:500] if exception is not None else "failed for good"
    return Outcome(outcome=kind, error=error, reason=reason, **_ids(message))
