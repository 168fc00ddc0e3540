"""Template filters: times, ages and JSON as an operator reads them (escaped by the template)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2


def when(value: Any) -> str:
    """A stored time as ``2026-11-25 19:52:08`` (UTC), or a dash."""
    if not isinstance(value, datetime):
        return "-" if value is None else str(value)
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: Any) -> str:
    """How long ago a stored time was: ``42s``, ``7m``, ``3h``, ``2d``."""
    if not isinstance(value, datetime):
        return "-"
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pretty(value: Any) -> str:
    """A JSON document (or a JSON string) indented for reading."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, default=str, sort_keys=False)


def path(value: Any) -> str:
    """A value made safe as one URL path segment."""
    return quote(str(value), safe="")


def install(environment: jinja2.Environment) -> None:
    environment.filters.update(when=when, ago=ago, pretty=pretty, path=path)
