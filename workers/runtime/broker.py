"""The RabbitMQ broker and the actor registry: actors are declared once, bound to any broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.errors import ConnectionClosed

from messages import Message, decode
from messages.errors import InvalidMessageError, PermanentError
from messages.registry import InvalidMessage
from workers.runtime import confirms, fanout, results
from workers.runtime.admission import COMMAND_QUEUES, upstream_exchange
from workers.runtime.consumer import GuardedConsumer, screen_delivery
from workers.runtime.envelopes import Rejection
from workers.runtime.outage import OUTAGE
from workers.runtime.prefix import events_exchange, get_prefix, set_prefix
from workers.runtime.replyto import carry_reply_to

log = structlog.get_logger("sagaworks.broker")

#: Every actor the project declares, in declaration order.
ACTORS: list[dramatiq.Actor[Any, Any]] = []
#: Each actor's queue name as declared, before any prefix.
BASE_QUEUES: dict[str, str] = {}
#: The replay journal queue (before any prefix): one marker per committed replay batch.
REPLAY_JOURNAL = "sagaworks.replays"

# Actors are declared against this placeholder at import time and re-bound by ``bind()``.
_DECLARATION_BROKER = StubBroker()


def queue_name(base: str) -> str:
    """The real name of queue ``base`` in this process (prefixed, e.g. to isolate tests)."""
    return get_prefix() + base


class Rabbitmq(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker; every delivery screened; optionally quorum queues.

    Its consumers hand Dramatiq only envelopes that passed ``screen`` (see ``GuardedConsumer``);
    a refused one is nacked into ``.XQ`` and reported to every middleware with an
    ``after_envelope_rejected`` hook. Command queues are also bound to the upstream exchange;
    events are published once to the events exchange and fanned out to their subscribers'
    queues (``workers.runtime.fanout``).

    Quorum queues are replicated across a RabbitMQ cluster, so a node's loss loses no
    command or saga message. A queue's type is fixed when it is declared: switch it on for a
    new deployment (or after draining and deleting the queues), never on live ones.
    """

    def __init__(
        self, *, quorum: bool = False, max_message_bytes: int = 1024 * 1024, **kwargs: Any
    ) -> None:
        self.quorum = quorum
        self.max_message_bytes = max_message_bytes
        #: (queue, routing key) pairs bound to the events exchange by this process.
        self.bound: set[tuple[str, str]] = set()
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
        if queue_name.removeprefix(get_prefix()) in COMMAND_QUEUES:
            exchange = upstream_exchange(get_prefix())
            self.channel.exchange_declare(exchange, "direct", durable=True)
            self.channel.queue_bind(queue_name, exchange, routing_key=queue_name)
        return declared

    def pipelined(self) -> AbstractContextManager[confirms.Pipeline | None]:
        """This thread's publishes inside the block share one confirm wait, at its end."""
        if not self.confirm_delivery:
            return nullcontext()
        return self._pipelined()

    @contextmanager
    def _pipelined(self) -> Iterator[confirms.Pipeline]:
        try:
            with confirms.pipelined(self._confirm_channel) as pipeline:
                yield pipeline
        except ConnectionClosed:
            self.forget_declarations()  # a publish was refused or unroutable: declare anew
            raise

    def _confirm_channel(self) -> confirms.ConfirmChannel:
        channel: confirms.ConfirmChannel | None = getattr(self.state, "confirm_channel", None)
        if channel is None or not channel.is_open or channel.connection is not self.connection:
            channel = self.state.confirm_channel = confirms.ConfirmChannel(self.connection)
        return channel

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        # A command's AMQP reply_to reaches the Replies middleware through its options.
        consumer = carry_reply_to(super().consume(queue_name, prefetch, timeout))
        OUTAGE.restored()  # a consumer connected: the broker is back, if it was away
        return consumer

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        sent = self._enqueue(message, delay=delay)
        OUTAGE.restored()
        return sent

    def _enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        """Dramatiq's enqueue; inside ``pipelined()`` the confirm is awaited with the others.

        A shared envelope (an event as the outbox published it, seen by a middleware's
        ``after_enqueue``) enqueued again goes to the events exchange again, not to a queue
        named after the exchange.
        """
        if fanout.is_shared(message, events_exchange()):
            if delay is not None:
                raise ValueError("a fanned-out event cannot be delayed: delay a subscriber's copy")
            self.fan_out(message, message.actor_name, list(message.options[fanout.OPTION]))
            return message
        pipeline = confirms.current()
        if pipeline is None:
            return super().enqueue(message, delay=delay)
        canonical = queue = message.queue_name
        if delay is not None:
            queue = dq_name(queue)
            message = message.copy(queue_name=queue, options={"eta": current_millis() + delay})

        def declare() -> None:
            self.declare_queue(canonical, ensure=True)

        self._publish(pipeline, message, "", queue, delay=delay, declare=declare)
        return message

    def fan_out(self, message: dramatiq.Message[Any], routing_key: str, queues: list[str]) -> None:
        """Publish ``message`` once to the events exchange, for every queue in ``queues``."""
        exchange = events_exchange()
        pipeline = confirms.current()
        if pipeline is None:
            with self.pipelined() as own:
                self._fan_out(own, message, exchange, routing_key, queues)
        else:
            self._fan_out(pipeline, message, exchange, routing_key, queues)

    def _fan_out(
        self,
        pipeline: confirms.Pipeline | None,
        message: dramatiq.Message[Any],
        exchange: str,
        routing_key: str,
        queues: list[str],
    ) -> None:
        def declare() -> None:
            self._bind(exchange, routing_key, queues)

        self._publish(pipeline, message, exchange, routing_key, delay=None, declare=declare)

    def _bind(self, exchange: str, routing_key: str, queues: list[str]) -> None:
        """Bind each queue to ``exchange`` for ``routing_key`` (once per process)."""
        missing = [q for q in queues if (q, routing_key) not in self.bound]
        if not missing:
            return
        self.channel.exchange_declare(exchange, "direct", durable=True)
        for queue in missing:
            self.declare_queue(queue, ensure=True)
            self.channel.queue_bind(queue, exchange, routing_key=routing_key)
            self.bound.add((queue, routing_key))

    def _publish(
        self,
        pipeline: confirms.Pipeline | None,
        message: dramatiq.Message[Any],
        exchange: str,
        routing_key: str,
        *,
        delay: int | None,
        declare: Callable[[], None],
    ) -> None:
        properties = pika.BasicProperties(
            delivery_mode=2, priority=message.options.get("broker_priority")
        )
        try:
            declare()
            self.emit_before("enqueue", message, delay)
            if pipeline is None:  # no confirms asked for: publish and go
                self.channel.basic_publish(exchange, routing_key, message.encode(), properties)
            else:
                pipeline.publish(exchange, routing_key, message.encode(), properties)
            self.emit_after("enqueue", message, delay)
        except (pika.exceptions.AMQPError, pika.exceptions.ConnectionWrongStateError) as exc:
            self.forget_declarations()
            del self.connection
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]  # Dramatiq is untyped

    def forget_declarations(self) -> None:
        """Declare queues and bindings again before the next publish (after a failure)."""
        self.bound.clear()
        self.queues_pending.update(self.queues)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        if self.quorum and is_critical_queue(queue_name):
            arguments["x-queue-type"] = "quorum"
        return arguments


def is_critical_queue(queue_name: str) -> bool:
    """Command and saga queues (and their delay queues): the ones worth replicating."""
    base = queue_name.removeprefix(get_prefix()).removesuffix(".DQ")
    return base.endswith(".commands") or base.startswith("sagas.")


def bind(broker: dramatiq.Broker, queue_prefix: str = "") -> dramatiq.Broker:
    """Make ``broker`` the global broker and declare every actor on it.

    ``queue_prefix`` is put before every queue name: separate deployments (or tests) can
    share one RabbitMQ virtual host without sharing queues.
    """
    set_prefix(queue_prefix)
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
        def run(*args: Any, **kwargs: Any) -> None:
            message = decode_argument(args, kwargs)
            with confirmed_together(dramatiq.get_broker()):
                results.keep(fn(message))  # a command's result answers its reply_to

        run.__name__ = run.__qualname__ = fn.__name__
        run.__doc__ = fn.__doc__
        options.setdefault("throws", (PermanentError,))
        decorator = dramatiq.actor(queue_name=queue_name, broker=_DECLARATION_BROKER, **options)
        actor: dramatiq.Actor[Any, Any] = decorator(run)
        ACTORS.append(actor)
        BASE_QUEUES[actor.actor_name] = queue_name
        return actor

    return declare


def confirmed_together(broker: dramatiq.Broker) -> AbstractContextManager[Any]:
    """What a handler publishes is confirmed in one wait when it returns (RabbitMQ only)."""
    return broker.pipelined() if isinstance(broker, Rabbitmq) else nullcontext()


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
        channel.exchange_delete(fanout.exchange_name(prefix))
    finally:
        connection.close()
