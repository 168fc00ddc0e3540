"""Each projection's collection, position, lag and last rebuild: for the CLI and the console."""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from readstore.cache import model_version
from readstore.db import Document
from readstore.lag import projection_lag
from readstore.rebuild import rebuild_states


def projection_rows(database: Database[Document]) -> list[dict[str, Any]]:
    """One row per projection, by name: where it stands against the event store."""
    from workers.subscribers.projections import PROJECTIONS  # noqa: PLC0415 -- after the actor modules

    rebuilds = rebuild_states(database)
    return [
        _row(database, kind, rebuilds.get(name) or {})
        for name, (kind, _) in sorted(PROJECTIONS.items())
    ]


def _row(database: Database[Document], kind: Any, state: Document) -> dict[str, Any]:
    row: dict[str, Any] = {"projection": kind.name, "collection": kind.collection_name}
    try:
        lag = projection_lag(kind(database))
    except Exception as exc:  # shown in the row: one model must not hide the others
        row.update(streams=None, position=None, committed=None, lag=None, error=repr(exc))
    else:
        row.update(
            streams=lag.streams, position=lag.applied, committed=lag.committed, lag=lag.behind
        )
    row.update(
        model_version=model_version(database, kind.name),
        rebuild=state.get("phase"),
        rebuilt_at=state.get("finished_at"),
        rebuild_holder=state.get("holder"),
        rebuild_progress=_progress(state),
    )
    return row


def _progress(state: Document) -> str | None:
    """How far a rebuild has come (commits read, events applied); ``None`` if none ran."""
    if not state:
        return None
    return f"{state.get('commits', 0)} commits, {state.get('events', 0)} events"
