"""Which dead letters an operation or a listing applies to, and how an index reads them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from readstore.db import Document

#: What telling whether a selector picks an entry reads of it.
SELECTED = dict.fromkeys(("queue", "actor", "error_type", "group", "state", "last_failed_at"), 1)


@dataclass(frozen=True)
class Selector:
    """Which entries an operation applies to (every given criterion must hold)."""

    ids: Sequence[str] = ()
    queue: str | None = None
    actor: str | None = None
    error: str | None = None
    group: str | None = None
    since: datetime | None = None
    state: str | None = "dead"
    #: Only entries that last failed before this (the next page of a listing).
    before: datetime | None = None

    def query(self) -> Document:
        query: Document = {}
        if self.ids:
            query["_id"] = {"$in": list(self.ids)}
        for key, value in (
            ("queue", self.queue),
            ("actor", self.actor),
            ("error_type", self.error),
            ("group", self.group),
            ("state", self.state),
        ):
            if value is not None:
                query[key] = str(value)
        window: Document = {}
        if self.since is not None:
            window["$gte"] = self.since
        if self.before is not None:
            window["$lt"] = self.before
        if window:
            query["last_failed_at"] = window
        return query

    def split(self) -> tuple[Document, Document]:
        """The query as one index reads it (its leading field, the state, the failure time)
        and the rest, matched on the entries read: SecantusDB reads the whole collection for
        a filter naming any field its index does not hold."""
        query = self.query()
        lead = "group" if self.group is not None else "queue" if self.queue is not None else ""
        held = set(query) if self.ids else {lead, "state", "last_failed_at"}
        return (
            {k: v for k, v in query.items() if k in held},
            {k: v for k, v in query.items() if k not in held},
        )

    @property
    def empty(self) -> bool:
        return not (self.ids or self.queue or self.actor or self.error or self.group)


def holds(doc: Document, rest: Document) -> bool:
    return all(doc.get(k) == v for k, v in rest.items())
