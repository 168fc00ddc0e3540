"""The RabbitMQ broker and the actor registry: actors are declared once, bound to any broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker

from messages import Message, decode
from messages.errors import InvalidMessageError, PermanentError
from messages.registry import InvalidMessage
from workers.runtime.replyto import carry_reply_to

#: Every actor the project declares, in declaration order.
ACTORS: list[dramatiq.Actor[Any, Any]] = []
#: Each actor's queue name as declared, before any prefix.
BASE_QUEUES: dict[str, str] = {}

# Actors are declared against this placeholder at import time and re-bound by ``bind()``.
_DECLARATION_BROKER = StubBroker()
_queue_prefix = ""


def queue_name(base: str) -> str:
    """The real name of queue ``base`` in this process (prefixed, e.g. to isolate tests)."""
    return _queue_prefix + base


class Rabbitmq(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker; optionally with quorum queues for commands and sagas.

    Quorum queues are replicated across a RabbitMQ cluster, so a node's loss loses no
    command or saga message. A queue's type is fixed when it is declared: switch it on for a
    new deployment (or after draining and deleting the queues), never on live ones.
    """

    def __init__(self, *, quorum: bool = False, **kwargs: Any) -> None:
        self.quorum = quorum
        super().__init__(**kwargs)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        # A command's AMQP reply_to reaches the Replies middleware through its options.
        return carry_reply_to(super().consume(queue_name, prefetch, timeout))

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        if self.quorum and is_critical_queue(queue_name):
            arguments["x-queue-type"] = "quorum"
        return arguments


def is_critical_queue(queue_name: str) -> bool:
    """Command and saga queues (and their delay queues): the ones worth replicating."""
    base = queue_name.removeprefix(_queue_prefix).removesuffix(".DQ")
    return base.endswith(".commands") or base.startswith("sagas.")


def bind(broker: dramatiq.Broker, queue_prefix: str = "") -> dramatiq.Broker:
    """Make ``broker`` the global broker and declare every actor on it.

    ``queue_prefix`` is put before every queue name: separate deployments (or tests) can
    share one RabbitMQ virtual host without sharing queues.
    """
    global _queue_prefix  # noqa: PLW0603 -- one broker binding per process, Dramatiq style
    _queue_prefix = queue_prefix
    dramatiq.set_broker(broker)
    for actor in ACTORS:
        actor.queue_name = queue_prefix + BASE_QUEUES[actor.actor_name]
        actor.broker = broker
        broker.declare_actor(actor)
    return broker


def message_actor(queue_name: str, **options: Any) -> Callable[[Callable[[Any], Any]], Any]:
    """Declare an actor whose single argument is a domain message (decoded and validated).

    A malformed call (wrong arguments, undecodable message) is a permanent failure: no
    retries, straight to the dead letters with the reason.
    """

    def declare(fn: Callable[[Any], Any]) -> dramatiq.Actor[Any, Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            return fn(decode_argument(args, kwargs))  # a command's result answers its reply_to

        run.__name__ = run.__qualname__ = fn.__name__
        run.__doc__ = fn.__doc__
        options.setdefault("throws", (PermanentError,))
        decorator = dramatiq.actor(queue_name=queue_name, broker=_DECLARATION_BROKER, **options)
        actor: dramatiq.Actor[Any, Any] = decorator(run)
        ACTORS.append(actor)
        BASE_QUEUES[actor.actor_name] = queue_name
        return actor

    return declare


def decode_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Message:
    if len(args) != 1 or kwargs:
        raise InvalidMessageError(
            f"expected exactly one argument (the message), got {len(args)} positional "
            f"and {len(kwargs)} keyword"
        )
    try:
        return decode(args[0])
    except InvalidMessage as exc:
        raise InvalidMessageError(str(exc)) from None


def delete_queues(url: str, prefix: str, broker: dramatiq.Broker) -> None:
    """Delete the queues ``broker`` declared under ``prefix`` (with their .DQ and .XQ)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in broker.get_declared_queues():
            if name.startswith(prefix):
                for suffix in ("", ".DQ", ".XQ"):
                    channel.queue_delete(name + suffix)
    finally:
        connection.close()
