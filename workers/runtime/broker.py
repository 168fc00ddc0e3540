"""The RabbitMQ broker and the actor registry: actors are declared once, bound to any broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name

from messages import Message, decode
from messages.errors import InvalidMessageError, PermanentError
from messages.registry import InvalidMessage
from workers.runtime.admission import COMMAND_QUEUES, admit, upstream_exchange
from workers.runtime.envelopes import (
    UNAUTHORIZED,
    UNKNOWN_ACTOR,
    Rejection,
    refuse,
    rejection_key,
    screen,
)

log = structlog.get_logger("sagaworks.broker")

#: Every actor the project declares, in declaration order.
ACTORS: list[dramatiq.Actor[Any, Any]] = []
#: Each actor's queue name as declared, before any prefix.
BASE_QUEUES: dict[str, str] = {}
#: The replay journal queue (before any prefix): one marker per committed replay batch.
REPLAY_JOURNAL = "sagaworks.replays"

# Actors are declared against this placeholder at import time and re-bound by ``bind()``.
_DECLARATION_BROKER = StubBroker()
_queue_prefix = ""


def queue_name(base: str) -> str:
    """The real name of queue ``base`` in this process (prefixed, e.g. to isolate tests)."""
    return _queue_prefix + base


class Rabbitmq(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker; every delivery screened; optionally quorum queues.

    Its consumers hand Dramatiq only envelopes that passed ``screen`` (see ``GuardedConsumer``);
    a refused one is nacked into ``.XQ`` and reported to every middleware with an
    ``after_envelope_rejected`` hook. Command queues are also bound to the upstream exchange.

    Quorum queues are replicated across a RabbitMQ cluster, so a node's loss loses no
    command or saga message. A queue's type is fixed when it is declared: switch it on for a
    new deployment (or after draining and deleting the queues), never on live ones.
    """

    def __init__(
        self, *, quorum: bool = False, max_message_bytes: int = 1024 * 1024, **kwargs: Any
    ) -> None:
        self.quorum = quorum
        self.max_message_bytes = max_message_bytes
        super().__init__(**kwargs)

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return GuardedConsumer

    def screen(self, queue: str, exchange: str, body: bytes) -> Rejection | None:
        """Why the delivery of ``body`` on ``queue`` via ``exchange`` is refused, or ``None``."""
        actor_queues = {name: actor.queue_name for name, actor in self.actors.items()}
        return screen_delivery(queue, exchange, body, self.max_message_bytes, actor_queues)

    def report_rejection(self, queue: str, body: bytes, rejection: Rejection) -> None:
        log.warning(
            "envelope.rejected", queue=queue, field=rejection.field, error=rejection.error_type
        )
        for middleware in self.middleware:
            hook = getattr(middleware, "after_envelope_rejected", None)
            if hook is None:
                continue
            try:
                hook(self, queue, body, rejection)
            except Exception:  # a hook must not stop the consumer; .XQ still holds the copy
                log.exception("envelope.report_failed", queue=queue)

    def _declare_queue(self, queue_name: str) -> Any:
        declared = super()._declare_queue(queue_name)  # type: ignore[no-untyped-call]  # Dramatiq is untyped
        if queue_name.removeprefix(_queue_prefix) in COMMAND_QUEUES:
            exchange = upstream_exchange(_queue_prefix)
            self.channel.exchange_declare(exchange, "direct", durable=True)
            self.channel.queue_bind(queue_name, exchange, routing_key=queue_name)
        return declared

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        if self.quorum and is_critical_queue(queue_name):
            arguments["x-queue-type"] = "quorum"
        return arguments


class GuardedConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, yielding only deliveries its broker's ``screen`` passed.

    Dramatiq posts a processed message back to the consumer of ``message.queue_name`` and
    calls ``get_actor(message.actor_name)``: an envelope that lies about its queue, or whose
    fields have the wrong types, raises there and kills a worker or consumer thread. A refused
    delivery is nacked (RabbitMQ moves it to ``.XQ``) and reported, and never reaches Dramatiq.
    """

    broker: Rabbitmq

    def __init__(self, broker: Rabbitmq, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]  # untyped
        self.iterator = self._screened(self.iterator)

    def _screened(self, deliveries: Iterator[Any]) -> Iterator[Any]:
        for method, properties, body in deliveries:
            if method is not None:
                rejection = self.broker.screen(self.queue_name, method.exchange, body)
                if rejection is not None:
                    self._nack(method.delivery_tag)  # type: ignore[no-untyped-call]  # untyped
                    self.broker.report_rejection(self.queue_name, body, rejection)
                    yield None, None, None
                    continue
            yield method, properties, body


def screen_delivery(
    queue: str, exchange: str, body: bytes, max_bytes: int, actor_queues: Mapping[str, str]
) -> Rejection | None:
    """Why a delivery is refused, or ``None``: the envelope's shape, its actor, its admission.

    ``exchange`` is the one the broker says it came through (``""``: the service's own route).
    """

    def admit_here(envelope: Mapping[str, Any]) -> None:
        check_actor(envelope["actor_name"], queue, actor_queues)
        admit(q_name(queue).removeprefix(_queue_prefix), envelope, trusted=exchange == "")

    try:
        return screen(body, queue, max_bytes, admit_here)
    except Exception as exc:  # a bug in screening must refuse the message, not kill a thread
        reason = f"body: screening failed ({type(exc).__name__})"
        return Rejection("body", reason, key=rejection_key(queue, body))


def check_actor(actor_name: str, queue: str, actor_queues: Mapping[str, str]) -> None:
    home = actor_queues.get(actor_name)
    if home is None:
        reason = f"no actor {actor_name[:80]!r} in this deployment"
        raise refuse("actor_name", reason, UNKNOWN_ACTOR)
    if home != q_name(queue):
        reason = f"{actor_name!r} consumes {home!r}, not {q_name(queue)!r}"
        raise refuse("actor_name", reason, UNAUTHORIZED)


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


def message_actor(queue_name: str, **options: Any) -> Callable[[Callable[[Any], None]], Any]:
    """Declare an actor whose single argument is a domain message (decoded and validated).

    A malformed call (wrong arguments, undecodable message) is a permanent failure: no
    retries, straight to the dead letters with the reason.
    """

    def declare(fn: Callable[[Any], None]) -> dramatiq.Actor[Any, Any]:
        def run(*args: Any, **kwargs: Any) -> None:
            fn(decode_argument(args, kwargs))

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
    if not isinstance(args[0], dict | str):
        raise InvalidMessageError(
            f"the message must be a JSON object, not {type(args[0]).__name__}"
        )
    try:
        return decode(args[0])
    except InvalidMessage as exc:
        raise InvalidMessageError(str(exc)) from None
    except (TypeError, ValueError, RecursionError) as exc:  # malformed in a way decode missed
        raise InvalidMessageError(f"the message does not decode: {type(exc).__name__}") from None


def delete_queues(url: str, prefix: str, broker: dramatiq.Broker) -> None:
    """Delete the queues ``broker`` declared under ``prefix`` (with their .DQ and .XQ)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in broker.get_declared_queues():
            if name.startswith(prefix):
                for suffix in ("", ".DQ", ".XQ"):
                    channel.queue_delete(name + suffix)
        channel.queue_delete(prefix + REPLAY_JOURNAL)
        channel.exchange_delete(upstream_exchange(prefix))
    finally:
        connection.close()
