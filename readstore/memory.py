"""Documents held in memory and changed by the same update operators MongoDB applies.

A rebuild folds the event log here through the projection's own apply code, then writes the
result in bulk: live application and rebuild share one algorithm. Only what projections use
is understood: equality and ``$exists`` filters; ``$set``, ``$unset``, ``$inc``, ``$max``.
Values are normalised as BSON stores them (datetimes to milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128

from readstore.db import Document

_MISSING = object()


_PLAIN = (str, int, float, bool, type(None), Decimal128)


def _stored(value: Any) -> Any:
    """``value`` as MongoDB would give it back (datetimes keep milliseconds only)."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_stored(v) for v in value]
    return value


def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _parent(doc: Document, path: str) -> tuple[Document, str]:
    *parents, leaf = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    return doc, leaf


def _plus(old: Any, inc: Any) -> Any:
    if isinstance(old, Decimal128) or isinstance(inc, Decimal128):
        total = _decimal(old) + _decimal(inc)
        return Decimal128(total)
    return old + inc


def _decimal(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)


def matches(doc: Mapping[str, Any], query: Mapping[str, Any], skip: str = "") -> bool:
    """Whether ``doc`` satisfies ``query`` but its field ``skip`` (equality, ``$exists``,
    ``$lt``, ``$not: {$gte}`` and ``$or`` only)."""
    for path, want in query.items():
        if path == skip:
            continue
        if path == "$or":
            if not any(matches(doc, alternative) for alternative in want):
                return False
        elif not _holds(_get(doc, path), want):
            return False
    return True


def _holds(got: Any, want: Any) -> bool:
    if isinstance(want, Mapping) and "$exists" in want:
        return (got is not _MISSING) == bool(want["$exists"])
    if isinstance(want, Mapping) and "$not" in want:  # {$not: {$gte: n}}: missing, null or below
        return got is _MISSING or got is None or not got >= want["$not"]["$gte"]
    if isinstance(want, Mapping) and "$lt" in want:
        return got is not _MISSING and got is not None and got < want["$lt"]
    if want is None:
        return got is _MISSING or got is None
    return got is not _MISSING and got == _stored(want)


def apply_update(doc: Document, update: Mapping[str, Mapping[str, Any]]) -> None:
    """Apply MongoDB update operators to ``doc`` in place."""
    for operator, fields in update.items():
        for path, value in fields.items():
            parent, leaf = _parent(doc, path)
            old = parent.get(leaf, _MISSING)
            if operator == "$set":
                parent[leaf] = _stored(value)
            elif operator == "$unset":
                parent.pop(leaf, None)
            elif operator == "$inc":
                parent[leaf] = value if old is _MISSING else _plus(old, value)
            elif operator == "$max":
                parent[leaf] = _stored(value) if old is _MISSING else max(old, _stored(value))
            else:
                raise NotImplementedError(f"{operator} is not folded in memory")


class MemoryCollection:
    """One collection's documents by ``_id``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.docs: dict[Any, Document] = {}

    def update(self, query: Mapping[str, Any], update: Any, upsert: bool) -> bool:
        """Like ``update_one``: whether a document was changed or inserted."""
        doc = self.docs.get(query["_id"])
        if doc is not None and matches(doc, query, skip="_id"):
            apply_update(doc, update)
            return True
        if doc is not None or not upsert:
            return False  # an upsert that meets an existing _id is a duplicate key
        doc = {"_id": query["_id"]}
        apply_update(doc, update)
        self.docs[doc["_id"]] = doc
        return True

    def find_one(self, doc_id: Any) -> Document | None:
        return self.docs.get(doc_id)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.docs.values())

    def __len__(self) -> int:
        return len(self.docs)


class Memory:
    """The collections of one fold."""

    def __init__(self) -> None:
        self.collections: dict[str, MemoryCollection] = {}

    def __getitem__(self, name: str) -> MemoryCollection:
        if name not in self.collections:
            self.collections[name] = MemoryCollection(name)
        return self.collections[name]
