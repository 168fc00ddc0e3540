"""The MongoDB client factory and the process-wide database handle (one path: pymongo by URL)."""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

Document = dict[str, Any]

_lock = threading.Lock()
_database: Database[Document] | None = None
_factory: tuple[str, str] | None = None
_pid: int | None = None

_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<pw>[^@/]*)@", re.I
)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe for logs and CLI output."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def connect(url: str, name: str, **options: Any) -> Database[Document]:
    """A database handle on ``url`` (a ``mongodb://`` URL); the client pools its connections."""
    client: MongoClient[Document] = MongoClient(
        url, tz_aware=True, uuidRepresentation="standard", appname="sagaworks", **options
    )
    return client[name]


def set_database(database: Database[Document]) -> None:
    """Use ``database`` for every store, projection and query in this process."""
    global _database, _factory, _pid
    with _lock:
        _database, _factory, _pid = database, None, os.getpid()


def configure_database(url: str, name: str) -> None:
    """Connect lazily, once per process (a client must not cross a fork)."""
    global _database, _factory, _pid
    with _lock:
        _database, _factory, _pid = None, (url, name), None


def get_database() -> Database[Document]:
    global _database, _pid
    with _lock:
        if _database is not None and _pid == os.getpid():
            return _database
        if _factory is None:
            raise RuntimeError(
                "no database configured: call set_database() or configure_database()"
            )
        _database, _pid = connect(*_factory), os.getpid()
        return _database
