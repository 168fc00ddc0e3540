"""The audit's whole-store pass: the log in one scan, the sagas in one read, sorted in memory.

One unfiltered, unsorted read of the commits in large batches (for SecantusDB the cheapest
way to read many documents: a projection or a sort costs it more than the bytes it saves),
each commit given to its order's facts or queued for its SKU's fold by the kind of stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymongo.database import Database

from readstore.db import Document
from readstore.eventlog import commits
from workers.ops.folds import OrderFacts

#: Commits per batch of the scan.
BATCH = 10_000
#: The kinds of stream an order's facts are folded from.
ORDER_KINDS = frozenset({"order", "payment", "reservation"})
#: The fields of a saga the audit reads.
SAGA_FIELDS = {"status": 1, "deadline": 1, "updated_at": 1, "pending.type": 1}


@dataclass
class Log:
    """The whole log, folded by order, and each SKU's commits (in version order)."""

    orders: dict[str, OrderFacts] = field(default_factory=dict)
    skus: dict[str, list[Document]] = field(default_factory=dict)
    read: int = 0

    def add(self, doc: Document) -> None:
        self.read += 1
        kind, _, name = doc["stream_id"].partition("-")
        if kind == "sku":
            self.skus.setdefault(name, []).append(doc)
        elif kind in ORDER_KINDS:
            self.orders.setdefault(name, OrderFacts(name)).add(doc)

    def sku_commits(self, sku: str, after: int = 0) -> list[Document]:
        """``sku``'s commits holding versions after ``after``, in version order."""
        found = [d for d in self.skus.get(sku, ()) if d["version"] > after]
        return sorted(found, key=lambda d: d["version"])

    def has_version(self, sku: str, version: int) -> bool:
        return any(d["version"] == version for d in self.skus.get(sku, ()))


def read_log(database: Database[Document]) -> Log:
    """Every commit, read once."""
    log = Log()
    for doc in commits(database).find({}).batch_size(BATCH):
        log.add(doc)
    return log


def read_sagas(database: Database[Document]) -> dict[str, Document]:
    """Every saga (the fields the audit reads), in one read."""
    found = database["sagas"].find({}, SAGA_FIELDS).batch_size(BATCH)
    return {d["_id"]: d for d in found}
