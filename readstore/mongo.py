"""Conversions between domain values and what MongoDB stores (Decimal128, string ids)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128


def money(value: Decimal) -> Decimal128:
    return Decimal128(value)


def from_mongo(value: Any) -> Any:
    """Turn stored values back into domain values, recursively (Decimal128 → Decimal)."""
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, dict):
        return {k: from_mongo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_mongo(v) for v in value]
    return value


def dig(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` in ``doc``, or ``None``."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
