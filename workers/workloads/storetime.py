"""What a bench's commands cost the store itself, per collection, as the store counts it.

MongoDB's ``top`` admin command (which mongod and the embedded store both answer) keeps,
for each collection, the time its operations took inside the server and how many there
were. Two readings, before and after a run, give each collection's share of the store's
time. On a busy store that time includes the wait inside the server behind other requests,
so it says where the store's work goes, not how long one write takes alone. A store that
does not answer ``top`` (a ``mongos``, a user without the privilege) gives no reading, and
the bench says why.

For the embedded store, which runs as a child process, the bench also reads the process's
CPU time (``process_cpu_seconds``): CPU per order, unlike ``top``'s times, does not grow
with queueing, and the share of a core it kept busy tells whether the store was the bound.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

#: Per collection: (microseconds, operations), as ``top`` counts them.
Reading = dict[str, tuple[int, int]]


def read_top(client: MongoClient[Any], database: str) -> Reading | str:
    """The store's counters for the collections of ``database``; why not, as text."""
    try:
        totals = client.admin.command("top")["totals"]
    except (PyMongoError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return collections_of(totals, database)


def collections_of(totals: Mapping[str, Any], database: str) -> Reading:
    """``top``'s totals narrowed to ``database``'s collections."""
    prefix = f"{database}."
    reading: Reading = {}
    for namespace, counters in totals.items():
        if not namespace.startswith(prefix) or not isinstance(counters, Mapping):
            continue
        total = counters.get("total", {})
        reading[namespace.removeprefix(prefix)] = (int(total["time"]), int(total["count"]))
    return reading


def rows(before: Reading, after: Reading, orders: int) -> list[dict[str, Any]]:
    """One row per collection the run used, per order, busiest first."""
    spent = {
        name: (micros - before.get(name, (0, 0))[0], count - before.get(name, (0, 0))[1])
        for name, (micros, count) in after.items()
    }
    used = {name: value for name, value in spent.items() if value[1] > 0}
    whole = sum(micros for micros, _ in used.values()) or 1
    table = [
        {
            "collection": name,
            "store_ms": round(micros / 1000 / orders, 2),
            "operations": round(count / orders, 2),
            "share": round(micros / whole, 3),
        }
        for name, (micros, count) in used.items()
    ]
    return sorted(table, key=lambda row: (-row["store_ms"], row["collection"]))


def render(table: list[dict[str, Any]] | str) -> list[str]:
    """The table as Markdown, or the reason there is none."""
    if isinstance(table, str):
        return [f"store time by collection: not available ({table})"]
    lines = [
        "Store time per confirmed order, by collection (the store's own `top`; on a busy store",
        "it includes the time requests queue inside it):",
        "",
        "| collection | store ms | operations | share |",
        "|---|---:|---:|---:|",
    ]
    for row in table:
        cells = [row["collection"], row["store_ms"], row["operations"], f"{row['share']:.0%}"]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    total = round(sum(row["store_ms"] for row in table), 1)
    lines.append(f"| **total** | {total} | | |")
    return lines


def process_cpu_seconds(pid: int) -> float | None:
    """The CPU time (user and system) process ``pid`` has used; ``None`` where ``/proc`` does
    not tell (not Linux, the process gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: the fields after it start past its ")".
    fields = stat.rpartition(")")[2].split()
    user, system = int(fields[11]), int(fields[12])  # fields 14 and 15 of the whole line
    return (user + system) / os.sysconf("SC_CLK_TCK")
