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

from workers.workloads.instruments import markdown

#: Per collection: (microseconds, operations), as ``top`` counts them.
Reading = dict[str, tuple[int, int]]


def read_top(client: MongoClient[Any], database: str) -> Reading | str:
    """The store's counters for the collections of ``database``; why not, as text."""
    try:
        totals = client.admin.command("top")["totals"]
    except (PyMongoError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    if not isinstance(totals, Mapping):
        return f"top answered {type(totals).__name__} totals, not a document"
    return collections_of(totals, database)


def collections_of(totals: Mapping[str, Any], database: str) -> Reading:
    """``top``'s totals narrowed to ``database``'s collections."""
    prefix = f"{database}."
    reading: Reading = {}
    for namespace, counters in totals.items():
        total = counters.get("total") if isinstance(counters, Mapping) else None
        if not namespace.startswith(prefix) or not isinstance(total, Mapping):
            continue
        micros, count = total.get("time"), total.get("count")
        if isinstance(micros, int) and isinstance(count, int):  # else not a counter we know
            reading[namespace.removeprefix(prefix)] = (micros, count)
    return reading


def rows(before: Reading, after: Reading, orders: int) -> list[dict[str, Any]]:
    """One row per collection the run used, per order, busiest first."""
    used: Reading = {}
    for name, (micros, count) in after.items():
        micros_before, count_before = before.get(name, (0, 0))
        spent = (micros - micros_before, count - count_before)
        # Counters that went back (a collection dropped and made again) say nothing of the run.
        if spent[1] > 0 and spent[0] >= 0:
            used[name] = spent
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
    ]
    cells = [[r["collection"], r["store_ms"], r["operations"], f"{r['share']:.0%}"] for r in table]
    total = round(sum(row["store_ms"] for row in table), 1)
    headers = ["collection", "store ms", "operations", "share"]
    return lines + markdown(headers, [*cells, ["**total**", total, "", ""]])


def process_cpu_seconds(pid: int) -> float | None:
    """The CPU time (user and system) process ``pid`` has used; ``None`` where ``/proc`` does
    not tell (not Linux, the process gone)."""
    return cpu_seconds_in(Path(f"/proc/{pid}/stat"))


def cpu_seconds_in(stat: Path) -> float | None:
    """The CPU time a ``/proc/<pid>/stat`` file tells; ``None`` if it is gone or unreadable."""
    try:
        # The command name (field 2) may hold spaces: the fields after it start past its ")".
        fields = stat.read_text().rpartition(")")[2].split()
        user, system = int(fields[11]), int(fields[12])  # fields 14 and 15 of the whole line
    except (OSError, IndexError, ValueError):
        return None
    return (user + system) / os.sysconf("SC_CLK_TCK")
