"""Comparing a read model with a rebuild of it from the log, document by document.

``verify_projection`` folds the log in memory (as a rebuild does, writing nothing) and
compares every collection of the projection with the fold: a document missing, extra, or
differing in a field is a difference (but for the projection's ``unverified`` fields, which
follow the order events were applied in). Positions are compared too, so a model that is merely
behind shows as different: verify a quiet system (after ``settle``) or read the positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from readstore.cache import VERSION_ID
from readstore.db import Document
from readstore.fold import fold
from readstore.mongo import from_mongo
from readstore.projection import Projection

#: Differences listed per projection at most (the count is always exact).
SHOWN = 50


@dataclass
class Verification:
    """The outcome of comparing one projection with a rebuild from the log."""

    projection: str
    documents: int = 0
    different: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return self.different == 0

    def note(self, difference: str) -> None:
        self.different += 1
        if len(self.differences) < SHOWN:
            self.differences.append(difference)

    def asdict(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "documents": self.documents,
            "different": self.different,
            "consistent": self.consistent,
            "differences": self.differences,
        }


def verify_projection(database: Database[Document], kind: type[Projection]) -> Verification:
    """Compare ``kind``'s live collections with a fold of the whole log."""
    folded, memory, _ = fold(database, kind)
    result = Verification(kind.name)
    for name in folded.collection_names():
        want = {doc["_id"]: from_mongo(doc) for doc in memory[name]}
        for doc in database[name].find({"_id": {"$ne": VERSION_ID}}):
            result.documents += 1
            expected = want.pop(doc["_id"], None)
            _compare(result, f"{name} {doc['_id']}", from_mongo(doc), expected, kind.unverified)
        for doc_id in want:
            result.note(f"{name} {doc_id}: missing from the read model")
    return result


def _compare(
    result: Verification,
    what: str,
    got: Document,
    want: Document | None,
    unverified: frozenset[str] = frozenset(),
) -> None:
    if want is None:
        result.note(f"{what}: in the read model, not in a rebuild from the log")
        return
    keys = sorted(k for k in (set(got) | set(want)) - unverified if got.get(k) != want.get(k))
    if keys:
        result.note(f"{what}: differs in {', '.join(keys)}")
