"""Where a projection's documents live: MongoDB collections, or memory during a rebuild's fold.

Both answer the calls the apply algorithm makes, so a live apply and a fold run the same
code and build the same documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pymongo.database import Database

from readstore.db import Document
from readstore.memory import Memory
from readstore.steps import MAYBE, Step, run_steps


class Documents(Protocol):
    """The documents of a projection's collections."""

    def run(self, steps: Sequence[Step]) -> bool:
        """Run ``steps`` in order (see ``readstore.steps``); ``False`` at the first miss, the
        steps after it not run."""
        ...

    def find_one(
        self, collection: str, doc_id: Any, fields: Iterable[str] = ()
    ) -> Document | None: ...


class StoredDocuments:
    """The documents in MongoDB."""

    def __init__(self, database: Database[Document]) -> None:
        self.database = database

    def run(self, steps: Sequence[Step]) -> bool:
        if not steps:
            return True
        return not run_steps(self.database[steps[0].collection], [steps])

    def find_one(self, collection: str, doc_id: Any, fields: Iterable[str] = ()) -> Document | None:
        wanted = dict.fromkeys(fields, 1) or None
        return self.database[collection].find_one({"_id": doc_id}, wanted)


class FoldedDocuments:
    """Documents in memory, changed by the same operators (see ``readstore.memory``)."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def run(self, steps: Sequence[Step]) -> bool:
        for step in steps:
            collection = self.memory[step.collection]
            done = collection.step(step.query, step.update, step.kind, step.array_filters)
            if not done and step.kind != MAYBE:
                return False
        return True

    def find_one(self, collection: str, doc_id: Any, fields: Iterable[str] = ()) -> Document | None:
        return self.memory[collection].find_one(doc_id)
