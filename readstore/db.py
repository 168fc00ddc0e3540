"""The MongoDB client factory and the process-wide database handle (one path: pymongo by URL).

Every client this factory makes writes with a write concern that survives a crash of the
store unless told otherwise: ``w="majority", j=True``. On a replica set a write is then
acknowledged once a majority of members hold it in their journal; on a single node (a
standalone mongod, the embedded SecantusDB) "majority" is that node, and ``j`` makes it
fsync the journal before answering. The event store, saga state and dead letters need it
(a lost commit or saga step after its effects were sent is a lost acknowledged write), and
so do the read models: a projection's write precedes the broker's acknowledgement, so a
lost one is never redelivered.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, TypedDict
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.database import Database

Document = dict[str, Any]


class WriteConcernOptions(TypedDict):
    """pymongo's write-concern keywords: ``w`` (members, or ``"majority"``) and ``journal``."""

    w: int | str
    journal: bool


#: Acknowledged once on disk on a majority of members (on a single node: on its disk).
DURABLE: WriteConcernOptions = {"w": "majority", "journal": True}

_lock = threading.Lock()
_database: Database[Document] | None = None
_factory: tuple[str, str, WriteConcernOptions] | None = None
_pid: int | None = None

#: Query or parameter keys whose values are secrets (``authSource``/``authMechanism`` are not).
_SECRET_KEY = re.compile(
    r"pass|pwd|secret|token|key|credential|signature|sig$|auth(?!source$|mechanism$)", re.I
)
_SEPARATORS = re.compile(r"([&;])")


def redact_url(url: str) -> str:
    """``url`` safe for logs and CLI output: userinfo and secret-looking values become ``***``.

    Parsed with the standard library; the userinfo ends at the *last* ``@`` of the authority,
    so a password with an unescaped ``@`` is redacted whole. Anything that does not parse as a
    URL with an authority is redacted up to its last ``@``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _blunt(url)
    if "@" in url and "@" not in parts.netloc:
        return _blunt(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"***@{hosts}"
    path, query, fragment = (_redact_pairs(p) for p in (parts.path, parts.query, parts.fragment))
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _redact_pairs(text: str) -> str:
    pieces = _SEPARATORS.split(text)
    for i, piece in enumerate(pieces):
        key, equals, _ = piece.partition("=")
        if equals and _SECRET_KEY.search(unquote_plus(key)):
            pieces[i] = f"{key}=***"
    return "".join(pieces)


def _blunt(text: str) -> str:
    return "***@" + _redact_pairs(text.rpartition("@")[2]) if "@" in text else _redact_pairs(text)


def connect(
    url: str, name: str, write_concern: WriteConcernOptions = DURABLE, **options: Any
) -> Database[Document]:
    """A database handle on ``url`` (a ``mongodb://`` URL), writing with ``write_concern``
    (which overrides ``w`` and ``journal`` in the URL); the client pools its connections."""
    client: MongoClient[Document] = MongoClient(
        url,
        tz_aware=True,
        uuidRepresentation="standard",
        appname="sagaworks",
        **{**options, **write_concern},
    )
    return client[name]


def set_database(database: Database[Document]) -> None:
    """Use ``database`` for every store, projection and query in this process."""
    global _database, _factory, _pid
    with _lock:
        _database, _factory, _pid = database, None, os.getpid()


def configure_database(url: str, name: str, write_concern: WriteConcernOptions = DURABLE) -> None:
    """Connect lazily, once per process (a client must not cross a fork)."""
    global _database, _factory, _pid
    with _lock:
        _database, _factory, _pid = None, (url, name, write_concern), None


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
