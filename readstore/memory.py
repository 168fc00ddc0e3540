"""Documents held in memory and changed by the same update operators MongoDB applies.

A rebuild folds the event log here through the projection's own apply code, then writes the
result in bulk: live application and rebuild share one algorithm. Only what projections use
is understood: equality (also of a field of an array's elements), ``$exists``, ``$lt`` and
``$or`` filters; ``$set`` (with the positional ``$``, and ``$[name]`` with array filters of
equalities), ``$unset``, ``$inc``, ``$max``, and
``$push`` with ``$each``, ``$sort``, ``$slice``. Values are normalised as BSON stores them
(datetimes to milliseconds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
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


def _element(doc: Mapping[str, Any], path: str, want: Any) -> int | None:
    """The index of the first element of an array in ``doc`` whose field (``path`` is
    ``<array>.<field>``) equals ``want``; ``None`` when there is none."""
    array, _, leaf = path.partition(".")
    items = doc.get(array)
    if not isinstance(items, list) or not leaf:
        return None
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and _get(item, leaf) == _stored(want):
            return i
    return None


def _parent(doc: Any, path: str) -> tuple[Any, Any]:
    *parents, leaf = path.split(".")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc.setdefault(part, {})
    return doc, int(leaf) if isinstance(doc, list) else leaf


def _plus(old: Any, inc: Any) -> Any:
    if isinstance(old, Decimal128) or isinstance(inc, Decimal128):
        total = _decimal(old) + _decimal(inc)
        return Decimal128(total)
    return old + inc


def _decimal(value: Any) -> Decimal:
    return value.to_decimal() if isinstance(value, Decimal128) else Decimal(value)


def matches(doc: Mapping[str, Any], query: Mapping[str, Any], skip: str = "") -> bool:
    """Whether ``doc`` satisfies ``query`` but its field ``skip`` (equality, ``$exists``,
    ``$lt``, ``$ne``, ``$not: {$gte}`` and ``$or`` only)."""
    for path, want in query.items():
        if path == skip:
            continue
        if path == "$or":
            if not any(matches(doc, alternative) for alternative in want):
                return False
        elif isinstance(want, Mapping) and "$ne" in want:
            if _equals(_get(doc, path), want["$ne"]):
                return False
        elif not _holds(_get(doc, path), want) and _element(doc, path, want) is None:
            return False
    return True


def _equals(got: Any, value: Any) -> bool:
    """Whether ``got`` is ``value``, or an array holding it (what ``$ne`` rules out)."""
    if got is _MISSING:
        return False
    if isinstance(got, list):
        return _stored(value) in got
    return bool(got == _stored(value))


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


def _positional(path: str, query: Mapping[str, Any], doc: Document) -> str:
    """``path`` with its ``$`` replaced by the index of the array element ``query`` matched."""
    if ".$." not in path:
        return path
    array = path.partition(".$.")[0]
    index = next(
        _element(doc, key, want) for key, want in query.items() if key.startswith(f"{array}.")
    )
    return path.replace(".$.", f".{index}.", 1)


def _push(old: Any, value: Any) -> list[Any]:
    """``$push`` of ``value`` (``{"$each": […], "$sort": {…}, "$slice": n}`` or one item)."""
    items = list(old) if isinstance(old, list) else []
    modified = isinstance(value, Mapping) and "$each" in value
    items += [_stored(v) for v in (value["$each"] if modified else [value])]
    for key, direction in reversed(list(value.get("$sort", {}).items()) if modified else []):
        items.sort(key=itemgetter(key), reverse=direction < 0)
    limit = value.get("$slice") if modified else None
    if limit is not None:
        items = items[limit:] if limit < 0 else items[:limit]
    return items


def _filtered(path: str, filters: Sequence[Mapping[str, Any]], doc: Document) -> list[str]:
    """``path`` for each array element its ``$[name]`` filter picks (none: no element)."""
    if ".$[" not in path:
        return [path]
    array, _, rest = path.partition(".$[")
    name, _, leaf = rest.partition("].")
    wanted = {
        key.removeprefix(f"{name}."): want
        for each in filters
        for key, want in each.items()
        if key.startswith(f"{name}.")
    }
    elements = _get(doc, array)
    return [
        f"{array}.{i}.{leaf}"
        for i, element in enumerate(elements if isinstance(elements, list) else [])
        if isinstance(element, Mapping) and matches(element, wanted)
    ]


def apply_update(
    doc: Document,
    update: Mapping[str, Mapping[str, Any]],
    query: Mapping[str, Any] = {},
    array_filters: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Apply MongoDB update operators to ``doc`` in place (``query``: what matched it;
    ``array_filters``: those of its ``$[name]`` paths)."""
    for operator, fields in update.items():
        for given, value in fields.items():
            for path in _filtered(_positional(given, query, doc), array_filters, doc):
                _apply_one(doc, operator, path, value)


def _apply_one(doc: Document, operator: str, path: str, value: Any) -> None:
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
    elif operator == "$push":
        parent[leaf] = _push(old, value)
    else:
        raise NotImplementedError(f"{operator} is not folded in memory")


class MemoryCollection:
    """One collection's documents by ``_id``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.docs: dict[Any, Document] = {}

    def step(
        self,
        query: Mapping[str, Any],
        update: Any,
        kind: str,
        array_filters: Sequence[Mapping[str, Any]] = (),
    ) -> bool:
        """Like a step of ``readstore.steps``: whether it matched (or, creating, inserted)."""
        return self.update(query, update, upsert=kind == "create", array_filters=array_filters)

    def update(
        self,
        query: Mapping[str, Any],
        update: Any,
        upsert: bool,
        array_filters: Sequence[Mapping[str, Any]] = (),
    ) -> bool:
        """Like ``update_one``: whether a document was changed or inserted."""
        doc = self.docs.get(query["_id"])
        if doc is not None and matches(doc, query, skip="_id"):
            apply_update(doc, update, query, array_filters)
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
