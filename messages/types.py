"""Wire types: what a field accepts, the same in the pydantic models and the JSON Schemas.

Each type carries its own JSON Schema and validates by the same rule, so a message the
exported schema accepts is one the worker accepts, and the other way round:

- ``Id``: a UUID in its canonical text form (8-4-4-4-12 hex digits, either case).
- ``Timestamp``: an RFC 3339 date-time *with* a zone (``Z`` or ``±hh:mm``), at most
  microseconds; never a number of seconds, never a local time.
- ``Money``: a decimal string (``"9.99"``), at most 2 decimals and 10 integer digits,
  never a JSON number (a float cannot hold 0.10 exactly). ``Amount`` is the same without
  the bound on integer digits: totals, charges and refunds the service computes.
- ``Whole``: a JSON integer (``5``, or ``5.0``, which JSON Schema calls an integer too),
  never a numeric string and never a boolean.

Patterns are ECMA-262 regular expressions, as JSON Schema says; they use ``[0-9]`` rather
than ``\\d`` (which is Unicode-wide in Python) and are matched whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import BeforeValidator, PlainSerializer, PlainValidator, StrictBool, WithJsonSchema

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MONEY_PATTERN = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"
AMOUNT_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]{1,2})?$"
TIMESTAMP_PATTERN = (
    r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _whole(pattern: str) -> re.Pattern[str]:
    """``pattern`` matched against the whole text (ECMA ``$`` never matches before a newline)."""
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


_UUID = _whole(UUID_PATTERN)
_TIMESTAMP = _whole(TIMESTAMP_PATTERN)


def _check_uuid(value: Any) -> Any:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str) and _UUID.fullmatch(value):
        return value
    raise ValueError("must be a UUID as text: 8-4-4-4-12 hexadecimal digits")


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
        return datetime.fromisoformat(value)  # a day past the month's end raises ValueError
    raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-11-22T06:00:00Z")


def _timestamp_text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _money_parser(pattern: str) -> Callable[[Any], Decimal]:
    whole = _whole(pattern)

    def parse(value: Any) -> Decimal:
        if isinstance(value, Decimal) and value.is_finite():
            value = format(value, "f")
        if isinstance(value, str) and whole.fullmatch(value):
            return Decimal(value)
        raise ValueError(
            'must be a decimal string such as "9.99" (at most 2 decimals), never a number'
        )

    return parse


def check_whole(value: Any) -> Any:
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON integer, not a string or a boolean")
    return value


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


Id = Annotated[
    UUID,
    BeforeValidator(_check_uuid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
]
Timestamp = Annotated[
    datetime,
    PlainValidator(_parse_timestamp),
    PlainSerializer(_timestamp_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]
Money = Annotated[
    Decimal,
    PlainValidator(_money_parser(MONEY_PATTERN)),
    PlainSerializer(_decimal_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["9.99"]}),
]
Amount = Annotated[
    Decimal,
    PlainValidator(_money_parser(AMOUNT_PATTERN)),
    PlainSerializer(_decimal_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["1250.50"]}),
]
Whole = Annotated[int, BeforeValidator(check_whole)]
Flag = StrictBool

__all__ = ["Amount", "Flag", "Id", "Money", "Timestamp", "Whole"]
