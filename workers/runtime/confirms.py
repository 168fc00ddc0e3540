"""Pipelined publisher confirms: a handler's publishes go out at once and wait once, together.

Dramatiq's ``confirm_delivery`` waits for the broker's confirm after every publish: a handler
that sends four messages waits four times in a row. Inside ``pipelined()``, publishes of the
thread go out on a confirm-mode channel of their own without waiting; the block's end waits
for all their confirms at once and raises if any was refused, so the message being handled
fails (and is retried) exactly as a refused blocking publish would make it fail. Work that
must follow a confirmed publish (a commit's dispatch receipt) is queued with
``after_confirms`` and runs only once the confirms are in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pika
from dramatiq.errors import ConnectionClosed

_local = threading.local()


class ConfirmChannel:
    """A channel in confirm mode whose publishes are counted, not awaited one by one.

    pika's blocking adapter only offers a publish that waits for its own confirm, so this
    drives the channel's underlying asynchronous implementation (``_impl``) and the adapter's
    I/O loop (``_flush_output``): both private, both stable across pika 1.x.
    """

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection
        self.channel = connection.channel()
        self.outstanding: set[int] = set()
        self.refused: list[str] = []
        self._next_tag = 1
        selected: list[bool] = []
        impl = self.channel._impl  # private: see the class docstring
        impl.confirm_delivery(ack_nack_callback=self._confirmed, callback=selected.append)
        impl.add_on_return_callback(self._returned)
        self.channel._flush_output(lambda: bool(selected))

    @property
    def is_open(self) -> bool:
        return bool(self.channel.is_open and self.connection.is_open)

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        impl = self.channel._impl  # private: see the class docstring
        impl.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        self.outstanding.add(self._next_tag)
        self._next_tag += 1

    def wait(self) -> None:
        """Until every publish so far is confirmed; raises if one was refused or unroutable."""
        self.channel._flush_output(lambda: not self.outstanding)
        refused, self.refused = self.refused, []
        if refused:
            reason = RuntimeError(f"publishes refused: {', '.join(refused)}")
            raise ConnectionClosed(reason)  # type: ignore[no-untyped-call]  # Dramatiq is untyped

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        tags = {method.delivery_tag}
        if method.multiple:
            tags = {t for t in self.outstanding if t <= method.delivery_tag}
        if isinstance(method, pika.spec.Basic.Nack):
            self.refused.extend(f"nack {t}" for t in sorted(tags & self.outstanding))
        self.outstanding -= tags

    def _returned(self, _: Any, method: Any, properties: Any, body: bytes) -> None:
        self.refused.append(f"unroutable via {method.exchange!r}/{method.routing_key!r}")


class Pipeline:
    """The publishes of one block on one thread, and what waits for their confirms."""

    def __init__(self, channel_for: Callable[[], ConfirmChannel]) -> None:
        self.channel_for = channel_for
        self.channel: ConfirmChannel | None = None
        self.callbacks: list[Callable[[], None]] = []
        self.published = 0
        self.waits = 0

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        if self.channel is None:
            self.channel = self.channel_for()
        self.channel.publish(exchange, routing_key, body, properties)
        self.published += 1

    def wait(self) -> None:
        """Wait for the confirms (once), then run what waited for them."""
        if self.channel is not None and self.published:
            self.waits += 1
            started = time.perf_counter()
            try:
                self.channel.wait()
            except (pika.exceptions.AMQPError, pika.exceptions.ConnectionWrongStateError) as exc:
                raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]  # Dramatiq is untyped
            for observe in WAIT_OBSERVERS:
                observe(time.perf_counter() - started, self.published)
            self.published = 0
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


#: Observers of every confirm wait (the benches time them): ``(seconds, publishes)``.
WAIT_OBSERVERS: list[Callable[[float, int], None]] = []


def current() -> Pipeline | None:
    """The pipeline open on this thread, if any."""
    pipeline: Pipeline | None = getattr(_local, "pipeline", None)
    return pipeline


@contextmanager
def pipelined(channel_for: Callable[[], ConfirmChannel]) -> Iterator[Pipeline]:
    """Publishes of this thread inside the block are confirmed together when it ends.

    Nested blocks join the outermost one. When the block raises, nothing waiting for the
    confirms runs (the message fails and its redelivery publishes again).
    """
    outer = current()
    if outer is not None:
        yield outer
        return
    pipeline = _local.pipeline = Pipeline(channel_for)
    try:
        yield pipeline
        pipeline.wait()
    finally:
        _local.pipeline = None


def after_confirms(callback: Callable[[], None]) -> None:
    """Run ``callback`` once this thread's pipelined publishes are confirmed (now if none)."""
    pipeline = current()
    if pipeline is None:
        callback()
    else:
        pipeline.callbacks.append(callback)
