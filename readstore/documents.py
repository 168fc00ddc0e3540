"""Where a projection's documents live: MongoDB collections, or memory during a rebuild's fold.

Both answer the two calls the apply algorithm makes, so a live apply and a fold run the
same code and build the same documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from readstore.db import Document
from readstore.memory import Memory


class Documents(Protocol):
    """The documents of a projection's collections."""

    def update(
        self, collection: str, query: Mapping[str, Any], update: Any, upsert: bool = False
    ) -> bool:
        """Apply ``update`` to the document ``query`` matches (insert it when ``upsert``);
        ``False`` when nothing matched or the insert met an existing ``_id``."""
        ...

    def find_one(
        self, collection: str, doc_id: Any, fields: Iterable[str] = ()
    ) -> Document | None: ...

    def find(self, collection: str, field: str, value: Any) -> list[Document]:
        """Every document whose ``field`` equals ``value``."""
        ...

    def scan(self, collection: str) -> Iterable[Document]:
        """Every document of ``collection``."""
        ...


class StoredDocuments:
    """The documents in MongoDB."""

    def __init__(self, database: Database[Document]) -> None:
        self.database = database

    def update(
        self, collection: str, query: Mapping[str, Any], update: Any, upsert: bool = False
    ) -> bool:
        try:
            result = self.database[collection].update_one(query, update, upsert=upsert)
        except DuplicateKeyError:
            return False  # the document exists and did not match: applied already
        return result.upserted_id is not None or result.modified_count == 1

    def find_one(self, collection: str, doc_id: Any, fields: Iterable[str] = ()) -> Document | None:
        wanted = dict.fromkeys(fields, 1) or None
        return self.database[collection].find_one({"_id": doc_id}, wanted)

    def find(self, collection: str, field: str, value: Any) -> list[Document]:
        return list(self.database[collection].find({field: value}))

    def scan(self, collection: str) -> Iterable[Document]:
        return self.database[collection].find()


class FoldedDocuments:
    """Documents in memory, changed by the same operators (see ``readstore.memory``)."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    def update(
        self, collection: str, query: Mapping[str, Any], update: Any, upsert: bool = False
    ) -> bool:
        return self.memory[collection].update(query, update, upsert)

    def find_one(self, collection: str, doc_id: Any, fields: Iterable[str] = ()) -> Document | None:
        return self.memory[collection].find_one(doc_id)

    def find(self, collection: str, field: str, value: Any) -> list[Document]:
        return [d for d in self.memory[collection] if d.get(field) == value]

    def scan(self, collection: str) -> Iterable[Document]:
        return iter(self.memory[collection])
