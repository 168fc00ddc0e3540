"""Envelope screening: a raw delivery is checked before Dramatiq decodes or acts on it.

Dramatiq trusts its envelope: a ``queue_name`` other than the queue a message came from, an
unhashable ``actor_name`` or ``options`` that are not an object raise inside its consumer or
worker threads. ``screen`` reads the raw body once, as data, and either passes it or returns a
``Rejection`` naming the field at fault, with a dead-letter key computed from the body (never a
value taken from the wire).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

#: JSON nesting deeper than this is refused unparsed (a deep body exhausts the parser).
MAX_DEPTH = 32
#: A well-formed envelope id: a UUID or another short token of safe characters.
WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_NAME = 255
#: Each field of Dramatiq's envelope and the JSON type it must have.
FIELDS: dict[str, type] = {
    "queue_name": str,
    "actor_name": str,
    "args": list,
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}
#: Options Dramatiq interprets, with the type each must have.
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "retries": (int,),
    "max_retries": (int,),
    "min_backoff": (int,),
    "max_backoff": (int,),
    "time_limit": (int,),
    "max_age": (int,),
    "eta": (int, float),
    "requeue_timestamp": (int,),
    "first_failed_at": (int,),
    "traceback": (str,),
    "notify_shutdown": (bool,),
    "broker_priority": (int,),
    "sagaworks_replay": (int,),
}
#: Options that make Dramatiq send further messages or run code by name: the project uses
#: neither pipelines nor callbacks, so a message carrying one is refused.
FORBIDDEN_OPTIONS = frozenset(
    {"pipe_target", "pipe_ignore", "on_success", "on_failure", "throws", "retry_when"}
)


#: The error types a refused delivery is recorded under.
INVALID_ENVELOPE = "InvalidEnvelope"  # a field missing, of the wrong type or inconsistent
UNDECODABLE = "UndecodableEnvelope"  # not UTF-8, not JSON, not an object, too deep
TOO_LARGE = "MessageTooLarge"
UNKNOWN_ACTOR = "ActorNotFound"
UNAUTHORIZED = "UnauthorizedMessage"  # not allowed on this queue by this route (admission)


@dataclass(frozen=True)
class Rejection:
    """Why a delivery was refused: the field at fault, a reason that names it, and the
    dead-letter key: the envelope's id when well formed, else a hash of queue and body."""

    field: str
    reason: str
    error_type: str = INVALID_ENVELOPE
    key: str = ""


class Refused(Exception):
    """Raised inside ``screen``'s checks; carries the rejection out."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


def refuse(field: str, reason: str, error_type: str = INVALID_ENVELOPE) -> Refused:
    return Refused(Rejection(field, f"{field}: {reason}", error_type))


def rejection_key(queue: str, body: bytes) -> str:
    """The dead-letter key of a refused delivery: a hash of its queue and raw body."""
    digest = hashlib.sha256(queue.encode() + b"\0" + body).hexdigest()
    return f"env-{digest[:32]}"


def well_formed_id(value: object) -> bool:
    return isinstance(value, str) and WELL_FORMED_ID.match(value) is not None


#: Decides whether the decoded envelope may run here; raises ``Refused`` when not.
Admit = Callable[[Mapping[str, Any]], None]


def screen(body: bytes, queue: str, max_bytes: int, admit: Admit | None = None) -> Rejection | None:
    """``None`` when ``body`` is a well-formed envelope for ``queue``, else why not."""
    envelope: dict[str, Any] = {}
    try:
        envelope = parse(body, max_bytes)
        check_fields(envelope, queue)
        if admit is not None:
            admit(envelope)
    except Refused as refused:
        if refused.rejection.error_type == TOO_LARGE and len(body) <= 4 * max_bytes:
            envelope = _peek(body)  # parsed only to find its id, within a bounded cost
        message_id = envelope.get("message_id")
        key = message_id if well_formed_id(message_id) else rejection_key(queue, body)
        return replace(refused.rejection, key=str(key))
    return None


def _peek(body: bytes) -> dict[str, Any]:
    try:
        return parse(body, len(body))
    except Refused:
        return {}


def parse(body: bytes, max_bytes: int) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise refuse("body", f"{len(body)} bytes, over the {max_bytes} limit", TOO_LARGE)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse("body", f"not UTF-8 ({exc.reason} at byte {exc.start})", UNDECODABLE) from None
    if depth(text) > MAX_DEPTH:
        raise refuse("body", f"JSON nested deeper than {MAX_DEPTH} levels", UNDECODABLE)
    try:
        doc = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise refuse("body", f"not JSON ({str(exc)[:120]})", UNDECODABLE) from None
    if not isinstance(doc, dict):
        raise refuse("body", f"a JSON {_json_type(doc)}, not an envelope object", UNDECODABLE)
    return doc


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside strings, without parsing (or recursion)."""
    deepest = level = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        level += 1 if bracket in "[{" else -1
        deepest = max(deepest, level)
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key in an object")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), "object")


def check_fields(envelope: Mapping[str, Any], queue: str) -> None:
    """Every field present, of its type, and consistent with the queue it arrived on."""
    unexpected = sorted(set(envelope) - set(FIELDS))
    if unexpected:
        raise refuse(str(unexpected[0])[:40], "not a field of a Dramatiq envelope")
    for name, kind in FIELDS.items():
        if name not in envelope:
            raise refuse(name, "missing")
        value = envelope[name]
        if type(value) is not kind:  # bool is not an int here, nor an int a float
            raise refuse(name, f"a JSON {_json_type(value)}, expected {_json_type(kind())}")
    if envelope["queue_name"] != queue:
        raise refuse(
            "queue_name", f"{_cut(envelope['queue_name'])!r} differs from the queue {queue!r}"
        )
    if not well_formed_id(envelope["message_id"]):
        raise refuse("message_id", "not a well-formed id (letters, digits, . _ : -; ≤128)")
    if not 0 < len(envelope["actor_name"]) <= MAX_NAME:
        raise refuse("actor_name", "empty or too long")
    check_options(envelope["options"], queue)


def check_options(options: Mapping[str, Any], queue: str) -> None:
    for key, value in options.items():
        if key in FORBIDDEN_OPTIONS:
            raise refuse(f"options.{key}", "not accepted (no pipelines or callbacks here)")
        kinds = OPTION_TYPES.get(key)
        if kinds is not None and (type(value) not in kinds or _negative(value)):
            raise refuse(f"options.{key}", f"a JSON {_json_type(value)} of the wrong type or sign")
    delayed = queue.endswith(".DQ")
    if delayed != ("eta" in options):
        where = "required on a delay queue" if delayed else "only allowed on a delay queue"
        raise refuse("options.eta", where)


def _negative(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def _cut(value: str, width: int = 80) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"
