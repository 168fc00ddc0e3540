"""The RabbitMQ consumer: a fanned-out event becomes its subscriber's envelope, and every
delivery is screened before Dramatiq acts on it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.common import q_name

from workers.runtime import fanout
from workers.runtime.admission import admit
from workers.runtime.envelopes import (
    UNAUTHORIZED,
    UNKNOWN_ACTOR,
    Rejection,
    refuse,
    rejection_key,
    screen,
)
from workers.runtime.prefix import events_exchange, get_prefix


class Screening(Protocol):
    """The broker as its consumer sees it."""

    def screen(self, queue: str, exchange: str, body: bytes) -> Rejection | None: ...

    def report_rejection(self, queue: str, body: bytes, rejection: Rejection) -> None: ...


class GuardedConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, yielding only deliveries its broker's ``screen`` passed.

    A delivery that came through the events exchange is first rewritten into this queue's
    subscriber envelope (``workers.runtime.fanout``). Dramatiq posts a processed message back
    to the consumer of ``message.queue_name`` and calls ``get_actor(message.actor_name)``: an
    envelope that lies about its queue, or whose fields have the wrong types, raises there and
    kills a worker or consumer thread. A refused delivery is nacked (RabbitMQ moves it to
    ``.XQ``) and reported, and never reaches Dramatiq.
    """

    broker: Screening

    def __init__(self, broker: Screening, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]  # untyped
        delivered = fanout.delivered(self.iterator, queue_name, events_exchange())
        self.iterator = self._screened(delivered)

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

    ``exchange`` is the one the broker says it came through: the default exchange and the
    events exchange are the service's own routes; the upstream exchange is not trusted.
    """
    trusted = exchange in ("", events_exchange())

    def admit_here(envelope: Mapping[str, Any]) -> None:
        check_actor(envelope["actor_name"], queue, actor_queues)
        admit(q_name(queue).removeprefix(get_prefix()), envelope, trusted=trusted)

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
