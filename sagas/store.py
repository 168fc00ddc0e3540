"""Saga state in MongoDB: one document per saga, changed only at the version it was read at.

A document holds the state, its version, the ids of the messages already handled, the
messages still to send (appended in the same update as the state change that produced them,
so a crash cannot separate them, and removed one by one once sent, so no later step can
overwrite one not sent yet), the deadline with ``wake_at`` (when the sweeper looks at the
saga next: indexed; for a finished saga with messages pending, ``resend_after`` from its
last step, so a "sent" mark lost with its process is repaired), and a bounded history of
transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from messages import Message, decode, encode
from sagas.state import TERMINAL, Fulfilment, SagaStatus

Document = dict[str, Any]
SAGAS = "sagas"
WAKE_INDEX = "wake_at_sparse"
#: Handled message ids kept per saga (a saga handles about ten messages in its life).
HANDLED_KEPT = 200
HISTORY_KEPT = 100
#: How long a finished saga's messages may stay pending before the sweeper sends them again
#: (a running saga's are sent again at its step's deadline).
RESEND_AFTER = timedelta(seconds=30)
_TERMINAL = sorted(s.value for s in TERMINAL)
#: The states of a saga still running. Queries name them (``$in``) rather than exclude the
#: finished ones (``$nin``): finished sagas are nearly all of them, and the status index
#: then reads only the running ones (on the embedded store a ``$nin`` read every saga).
RUNNING = sorted(s.value for s in SagaStatus if s not in TERMINAL)


@dataclass(frozen=True)
class SagaRecord:
    """A saga as stored: its state at ``version``, and what it has not sent yet."""

    saga_id: str
    version: int
    state: Fulfilment
    handled: frozenset[str]
    pending: tuple[Message, ...]

    @classmethod
    def from_document(cls, doc: Document) -> SagaRecord:
        return cls(
            saga_id=doc["_id"],
            version=doc["version"],
            state=Fulfilment.model_validate(doc["state"]),
            handled=frozenset(doc.get("handled", ())),
            pending=tuple(decode(p) for p in doc.get("pending", ())),
        )


def stepped(
    record: SagaRecord, state: Fulfilment, cause: Message, out: Sequence[Message]
) -> SagaRecord:
    """``record`` after one step: the next version, ``cause`` handled, ``out`` pending."""
    handled = record.handled | {str(cause.message_id)}
    return SagaRecord(record.saga_id, record.version + 1, state, handled, (*record.pending, *out))


class SagaStore:
    def __init__(
        self,
        database: Database[Document],
        name: str = SAGAS,
        resend_after: timedelta = RESEND_AFTER,
    ) -> None:
        self.collection: Collection[Document] = database[name]
        self.resend_after = resend_after

    def indexes(self) -> None:
        self.collection.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        # Sparse, and ``wake_at`` is unset (never null) on a saga with nothing to wake it for:
        # the index holds only the sagas the sweeper may have to look at.
        self.collection.create_index([("wake_at", ASCENDING)], sparse=True, name=WAKE_INDEX)
        if "wake_at" in self.collection.index_information():  # the earlier partial index
            self.collection.update_many({"wake_at": None}, {"$unset": {"wake_at": ""}})
            self.collection.drop_index("wake_at")

    def load(self, saga_id: str) -> SagaRecord | None:
        doc = self.collection.find_one({"_id": saga_id}, {"history": 0})
        return SagaRecord.from_document(doc) if doc else None

    def create(
        self, state: Fulfilment, cause: Message, out: Sequence[Message]
    ) -> SagaRecord | None:
        """Store a new saga; ``None`` if it exists already (another delivery was first)."""
        now = datetime.now(UTC)
        doc: Document = {
            "_id": str(state.order_id),
            "version": 1,
            "created_at": now,
            "handled": [str(cause.message_id)],
            "pending": [encode(m) for m in out],
            "history": [_transition(None, state, cause, out, now)],
            **_fields(state, now, finished=state.finished),
        }
        if (wake_at := self._wake_at(state, now, unsent=bool(out))) is not None:
            doc["wake_at"] = wake_at
        try:
            self.collection.insert_one(doc)
        except DuplicateKeyError:
            return None
        return SagaRecord(doc["_id"], 1, state, frozenset(doc["handled"]), tuple(out))

    def save(
        self, record: SagaRecord, state: Fulfilment, cause: Message, out: Sequence[Message]
    ) -> SagaRecord | None:
        """Write the step at the version it was read at: the saga as it now stands (its
        ``pending`` as far as this write knows), or ``None`` if another write came first."""
        now = datetime.now(UTC)
        update: Document = {
            "$set": {
                **_fields(state, now, finished=state.finished and not record.state.finished),
                "version": record.version + 1,
            },
            "$push": {
                "pending": {"$each": [encode(m) for m in out]},
                "handled": {"$each": [str(cause.message_id)], "$slice": -HANDLED_KEPT},
                "history": {
                    "$each": [_transition(record.state, state, cause, out, now)],
                    "$slice": -HISTORY_KEPT,
                },
            },
        }
        _wake(update, self._wake_at(state, now, unsent=bool(out or record.pending)))
        result = self.collection.update_one(
            {"_id": record.saga_id, "version": record.version}, update
        )
        if result.modified_count != 1:
            return None
        return stepped(record, state, cause, out)

    def _wake_at(self, state: Fulfilment, now: datetime, *, unsent: bool) -> datetime | None:
        """The step's deadline; for a finished saga with messages pending, ``resend_after``
        from now (so a "sent" mark lost with its process is repaired)."""
        if state.deadline is not None or not unsent:
            return state.deadline
        return now + self.resend_after

    @staticmethod
    def sent(saga_id: str, message_ids: Sequence[str]) -> UpdateOne:
        """The update that forgets these messages once sent; any other pending one stays."""
        return UpdateOne(
            {"_id": saga_id}, {"$pull": {"pending": {"message_id": {"$in": list(message_ids)}}}}
        )

    def forget(self, saga_id: str, message_ids: Sequence[str]) -> None:
        self.collection.bulk_write([self.sent(saga_id, message_ids)])

    def due(self, now: datetime, limit: int = 200) -> list[SagaRecord]:
        """Sagas whose ``wake_at`` has come: a step past its deadline, or a finished saga's
        messages pending past ``resend_after`` (the sweeper's work)."""
        cursor = self.collection.find(*self.due_query(now)).sort("wake_at", ASCENDING).limit(limit)
        return [SagaRecord.from_document(doc) for doc in cursor]

    @staticmethod
    def due_query(now: datetime) -> tuple[Document, Document]:
        """The filter and projection of ``due``: one range of the sparse ``wake_at`` index."""
        return {"wake_at": {"$lte": now}}, {"history": 0}

    @staticmethod
    def postpone(record: SagaRecord, until: datetime | None) -> UpdateOne:
        """Look at the saga again at ``until`` (never: ``None``) unless it moved meanwhile."""
        return UpdateOne({"_id": record.saga_id, "version": record.version}, _wake({}, until))

    def stuck(self, now: datetime, limit: int = 100) -> list[Document]:
        """Running sagas past their deadline, and flagged ones: what an operator looks at
        (by deadline, flagged ones first); two reads of the status index, no ``$or``."""
        late = {"status": {"$in": RUNNING}, "deadline": {"$lt": now}}
        flagged = {"status": SagaStatus.FLAGGED.value}
        found = [
            doc
            for query in (flagged, late)
            for doc in self.collection.find(query, {"history": 0})
            .sort("deadline", ASCENDING)
            .limit(limit)
        ]
        return sorted(
            found, key=lambda d: (d.get("deadline") is not None, d.get("deadline") or now)
        )[:limit]

    def get(self, saga_id: str) -> Document | None:
        return self.collection.find_one({"_id": saga_id})

    def find(
        self, status: str | None = None, older_than: timedelta | None = None, limit: int = 100
    ) -> list[Document]:
        """Sagas by state, least recently changed first when ``older_than`` is given."""
        query: Document = {}
        if status:
            query["status"] = status
        if older_than is not None:
            query["updated_at"] = {"$lte": datetime.now(UTC) - older_than}
        order = ASCENDING if older_than is not None else DESCENDING
        cursor = self.collection.find(query, {"history": 0}).sort("updated_at", order).limit(limit)
        return list(cursor)

    def count_by_status(self) -> dict[str, int]:
        rows = self.collection.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
        return {row["_id"]: row["n"] for row in rows}

    def count_running(self) -> int:
        """Sagas running, and finished ones with messages still pending: two counts on the
        status index, no ``$or`` (an audit's count, not a hot path)."""
        running = self.collection.count_documents({"status": {"$in": RUNNING}})
        unsent = {"status": {"$in": _TERMINAL}, "pending.0": {"$exists": True}}
        return running + self.collection.count_documents(unsent)


def _wake(update: Document, at: datetime | None) -> Document:
    """``update`` that also sets ``wake_at``, or unsets it (``None``: out of the sweeper's
    index)."""
    if at is None:
        update.setdefault("$unset", {})["wake_at"] = ""
    else:
        update.setdefault("$set", {})["wake_at"] = at
    return update


def saga_row(doc: Document) -> Document:
    """A stored saga as a listing shows it: state, reason, deadline, what it still owes."""
    state = doc.get("state", {})
    return {
        "order_id": doc["_id"],
        "state": doc.get("status"),
        "reason": state.get("reason"),
        "deadline": doc.get("deadline"),
        "pending": [p.get("type") for p in doc.get("pending", [])],
        "compensations": state.get("compensations", []),
        "version": doc.get("version"),
        "created_at": doc.get("created_at"),
        "updated_at": doc.get("updated_at"),
    }


def timeline(doc: Document) -> list[Document]:
    """A stored saga's transitions, oldest first, each with the message that caused it."""
    keys = ("at", "from", "to", "message_type", "message_id", "sent")
    return [{key: entry.get(key) for key in keys} for entry in doc.get("history", [])]


def _fields(state: Fulfilment, now: datetime, *, finished: bool) -> Document:
    fields: Document = {
        "saga": "fulfilment",
        "status": state.status.value,
        "state": state.model_dump(mode="json"),
        "deadline": state.deadline,
        "updated_at": now,
    }
    if finished:
        fields["finished_at"] = now
    return fields


def _transition(
    before: Fulfilment | None,
    after: Fulfilment,
    cause: Message,
    out: Sequence[Message],
    now: datetime,
) -> Document:
    return {
        "at": now,
        "from": before.status if before else None,
        "to": after.status,
        "message_type": cause.type_name(),
        "message_id": str(cause.message_id),
        "sent": [m.type_name() for m in out],
    }
