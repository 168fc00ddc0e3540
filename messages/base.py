"""Base classes for every message: metadata, identity and the wire shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from messages.types import Id, Timestamp, check_whole

#: Keys of the wire document that are metadata, not domain data.
METADATA_FIELDS = frozenset(
    {"message_id", "correlation_id", "causation_id", "occurred_at", "stream_id", "stream_version"}
)


#: An event's position in its stream, from 1.
StreamVersion = Annotated[int, Field(ge=1), BeforeValidator(check_whole)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """A domain message: frozen, strict, identified, and traceable to what caused it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Schema version of this model; bump it and register an upcaster to evolve a message.
    VERSION: ClassVar[int] = 1
    #: Routing context: the command queue (for commands) this message belongs to.
    CONTEXT: ClassVar[str] = ""

    message_id: Id = Field(default_factory=uuid4)
    correlation_id: Id | None = None
    causation_id: Id | None = None
    occurred_at: Timestamp = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _correlate_with_self(self) -> Self:
        # The first message of a conversation correlates with itself.
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.message_id)
        return self

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def data(self) -> dict[str, Any]:
        """The domain fields, as JSON-compatible values."""
        return self.model_dump(mode="json", exclude=set(METADATA_FIELDS))

    @property
    def correlation(self) -> UUID:
        assert self.correlation_id is not None  # set by the validator
        return self.correlation_id


class Command(Message):
    """An instruction to one aggregate, named in the imperative (``PlaceOrder``)."""

    #: Upstream services may send it; the others are sent by the fulfilment saga only.
    PUBLIC: ClassVar[bool] = False

    def stream_id(self) -> str:
        """The id of the stream (aggregate) this command targets."""
        raise NotImplementedError


class Event(Message):
    """A fact that happened, named in the past tense (``OrderPlaced``).

    ``stream_id`` and ``stream_version`` are set when the event is recorded in the event
    store; projections use them for per-stream ordering and idempotency.
    """

    stream_id: str | None = None
    stream_version: StreamVersion | None = None

    def recorded(self, stream_id: str, stream_version: int) -> Self:
        return self.model_copy(update={"stream_id": stream_id, "stream_version": stream_version})


M = TypeVar("M", bound=Message)


def caused_by(message_type: type[M], cause: Message, **data: Any) -> M:
    """Build a message caused by ``cause``: same correlation id, causation = cause's id."""
    return message_type(correlation_id=cause.correlation, causation_id=cause.message_id, **data)
