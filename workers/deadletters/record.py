"""What one dead-lettering was: the envelope, the decoded message, the error and its cause."""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dramatiq import Message as Envelope
from dramatiq.errors import ActorNotFound
from dramatiq.errors import DecodeError as EnvelopeDecodeError

from messages import decode, encode
from messages.errors import PermanentError
from workers.runtime.envelopes import Rejection, well_formed_id

#: The option a replayed envelope carries: how many times it was replayed.
REPLAY_OPTION = "sagaworks_replay"

#: Options that belong to one delivery, not to the message: dropped from the stored envelope.
DELIVERY_OPTIONS = frozenset(
    {"retries", "traceback", "requeue_timestamp", "eta", "first_failed_at", "redis_message_id"}
)
#: Stored bodies and envelopes are cut to this many characters (the store is not a blob store).
MAX_STORED_CHARS = 256 * 1024
#: What a reason's values look like: quoted text, ids, numbers (field paths keep their names).
_VALUES = [
    (re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`"), "<v>"),
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}"), "<id>"),
    (re.compile(r"\[input_value=.*?(?=, input_type|\])"), "[input_value=<v>"),
    (re.compile(r"\bv\d+\b"), "v<n>"),  # versions: "v2 is newer than v1"
    (re.compile(r"(?<![A-Za-z])-?\d+(\.\d+)?"), "<n>"),
]


@dataclass(frozen=True)
class Failure:
    """One dead-lettering of one message, ready to be stored."""

    key: str
    queue: str
    error_type: str
    reason: str
    attempts: int
    failed_at: datetime
    first_failed_at: datetime
    source: str
    actor: str | None = None
    envelope: str | None = None
    raw_body: str | None = None
    message: dict[str, Any] | None = None
    traceback: str | None = None
    truncated: bool = False
    #: False when the final exception is unknown (a copy found in ``.XQ`` with no record):
    #: such a failure never overwrites the cause an entry already has.
    known: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.key, str):  # a key is only ever computed, never read off the wire
            raise TypeError("a dead-letter key must be a string")

    @property
    def cause(self) -> str:
        return cause(self.reason)

    @property
    def fingerprint(self) -> str:
        return group_key(self.error_type, self.reason)

    @property
    def replayable(self) -> bool:
        return self.envelope is not None and not self.truncated


def cause(reason: str) -> str:
    """``reason`` with its values taken out: field paths and wording stay, data goes."""
    text = reason[:1000]
    for pattern, placeholder in _VALUES:
        text = pattern.sub(placeholder, text)
    return text[:300]


def group_key(error_type: str, reason: str) -> str:
    """A stable group key: the error type and the normalised reason (one group per cause)."""
    digest = hashlib.sha1(f"{error_type}|{cause(reason)}".encode(), usedforsecurity=False)
    return f"{error_type}:{digest.hexdigest()[:10]}"


def envelope_key(envelope: Envelope[Any]) -> str:
    """An envelope's entry key: its id when well formed, else a hash of the envelope."""
    if well_formed_id(envelope.message_id):
        return envelope.message_id
    canonical = json.dumps(envelope.asdict(), sort_keys=True, default=repr)
    return "env-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def queue_of(name: str) -> str:
    """The canonical queue of ``name`` (``q.DQ`` and ``q.XQ`` belong to ``q``)."""
    return name[:-3] if name.endswith((".DQ", ".XQ")) else name


def now() -> datetime:
    return datetime.now(UTC)


def from_millis(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if isinstance(value, int | float) else None


def attempts_of(options: dict[str, Any], exception: BaseException | None) -> int:
    """Deliveries made: ``Retries`` counts a retried failure before failing it, not a
    permanent one."""
    retries = int(options.get("retries") or 0)
    permanent = exception is None or isinstance(exception, PermanentError | ActorNotFound)
    return retries + 1 if permanent else max(retries, 1)


def stored_envelope(envelope: Envelope[Any]) -> tuple[str, bool]:
    """The envelope as JSON with delivery options dropped, cut when too large."""
    options = {k: v for k, v in envelope.options.items() if k not in DELIVERY_OPTIONS}
    text = json.dumps({**envelope.asdict(), "options": options}, default=str)
    return (text[:MAX_STORED_CHARS], True) if len(text) > MAX_STORED_CHARS else (text, False)


def domain_message(envelope: Envelope[Any]) -> dict[str, Any] | None:
    """The decoded domain message (its wire JSON), or ``None`` when it does not decode."""
    if len(envelope.args) != 1:
        return None
    try:
        return encode(decode(envelope.args[0]))
    except Exception:  # any decoding failure just means "not decodable"
        return None


def from_envelope(
    envelope: Envelope[Any],
    exception: BaseException | None,
    source: str,
    reason: str | None = None,
    trace: str | None = None,
) -> Failure:
    """The failure of a decoded envelope, with the exception that failed it if known."""
    options = envelope.options
    text, truncated = stored_envelope(envelope)
    failed_at = now()
    if exception is not None and trace is None:
        trace = "".join(traceback.format_exception(exception))[-MAX_STORED_CHARS:]
    error_type = type(exception).__name__ if exception is not None else "Unrecorded"
    return Failure(
        key=envelope_key(envelope),
        queue=queue_of(str(envelope.queue_name)),
        actor=str(envelope.actor_name),
        envelope=text,
        message=None if truncated else domain_message(envelope),
        error_type=error_type,
        reason=reason or (str(exception) if exception is not None else "unknown"),
        traceback=trace,
        attempts=attempts_of(options, exception),
        failed_at=failed_at,
        first_failed_at=from_millis(options.get("first_failed_at")) or failed_at,
        source=source,
        truncated=truncated,
        known=exception is not None,
    )


def from_rejection(
    queue: str, body: bytes, rejection: Rejection, source: str, at: datetime | None = None
) -> Failure:
    """The failure of a delivery refused before Dramatiq decoded it (never replayable)."""
    text = body.decode("utf-8", "replace")
    failed_at = at or now()
    return Failure(
        key=rejection.key,
        queue=queue_of(queue),
        raw_body=text[:MAX_STORED_CHARS],
        error_type=rejection.error_type,
        reason=rejection.reason,
        attempts=1,
        failed_at=failed_at,
        first_failed_at=failed_at,
        source=source,
        truncated=len(text) > MAX_STORED_CHARS,
    )


def from_body(queue: str, body: bytes, dead_at: datetime | None) -> Failure:
    """The failure of an undecodable body found in ``queue``'s ``.XQ`` (no hook saw it)."""
    try:
        Envelope.decode(body)
        problem = "decodable"
    except EnvelopeDecodeError as exc:
        problem = str(exc.__cause__ or exc)[:500]
    text = body.decode("utf-8", "replace")
    at = dead_at or now()
    key = hashlib.sha256(queue.encode() + b"\0" + body + at.isoformat().encode()).hexdigest()
    return Failure(
        key=f"raw-{key[:32]}",
        queue=queue_of(queue),
        raw_body=text[:MAX_STORED_CHARS],
        error_type="UndecodableEnvelope",
        reason=f"the body is not a Dramatiq envelope: {problem}",
        attempts=1,
        failed_at=at,
        first_failed_at=at,
        source="xq",
        truncated=len(text) > MAX_STORED_CHARS,
    )
