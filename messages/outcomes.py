"""The answer to a command: what the worker sends to the command's AMQP ``reply_to``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from messages.base import utcnow
from messages.types import Timestamp

Kind = Literal["committed", "duplicate", "rejected", "dead_lettered"]


class Outcome(BaseModel):
    """What became of a command: sent once, when its fate is final.

    ``committed``: handled (``appended`` says whether it added events; a no-op such as
    confirming a confirmed order appends none); ``stream_id``, ``version`` and ``token`` say
    where the write is (pass ``token`` to a query to read it). ``duplicate``: a message with
    this ``message_id`` was committed before; the token is that commit's. ``rejected``: a
    business rule refused it (``reason``). ``dead_lettered``: it failed for good (invalid,
    unknown type, retries exhausted); ``error`` and ``reason`` say why, and the dead-letter
    store holds it under ``envelope_id``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Kind
    #: The envelope's ``message_id`` (the idempotency key; equal to the domain message's).
    envelope_id: str
    #: The domain message's id and type, when the body could be read.
    message_id: str | None = None
    type: str | None = None
    stream_id: str | None = None
    version: int | None = Field(default=None, ge=0)
    #: ``STREAM:VERSION``, for read-your-writes queries.
    token: str | None = None
    appended: bool | None = None
    error: str | None = None
    reason: str | None = None
    at: Timestamp = Field(default_factory=utcnow)

    @property
    def succeeded(self) -> bool:
        return self.outcome in ("committed", "duplicate")
