"""``sagaworks projections`` (list, rebuild) and ``sagaworks analytics`` (the dashboard)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from typing import Any

from readstore.consistency import ConsistencyToken
from readstore.rebuild import Progress
from workers.cli.output import add_json_flag, emit, fields, table


def register(subparsers: Any) -> None:
    projections = subparsers.add_parser("projections", help="list and rebuild the read models")
    actions = projections.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="each projection: collection, position, lag")
    add_json_flag(listing)
    listing.set_defaults(func=list_projections)

    rebuild = actions.add_parser("rebuild", help="replay the event store into it, then swap")
    rebuild.add_argument("name", help="the projection (see `projections list`)")
    rebuild.add_argument("--dry-run", action="store_true", help="compare with the live model")
    rebuild.add_argument("--batch-size", type=int, default=500, help="commits per write batch")
    add_json_flag(rebuild)
    rebuild.set_defaults(func=rebuild_projection)

    analytics = subparsers.add_parser("analytics", help="the dashboard's figures")
    analytics.add_argument("--from", dest="start", type=date.fromisoformat, metavar="DAY")
    analytics.add_argument("--to", dest="end", type=date.fromisoformat, metavar="DAY")
    analytics.add_argument("--token", type=ConsistencyToken.parse, help="wait for this write")
    analytics.add_argument("--repeat", type=int, default=1, help="ask N times (cache figures)")
    add_json_flag(analytics)
    analytics.set_defaults(func=show_analytics)


def _connect() -> Any:
    from dramatiq.brokers.stub import StubBroker  # noqa: PLC0415 -- these need only MongoDB

    from readstore.db import get_database  # noqa: PLC0415
    from workers.boot import boot  # noqa: PLC0415
    from workers.runtime.settings import Settings  # noqa: PLC0415

    boot(Settings(), embedded_ok=False, broker=StubBroker())
    return get_database()


def _projection(name: str) -> Any:
    from workers.subscribers.projections import PROJECTIONS  # noqa: PLC0415 -- after boot

    if name not in PROJECTIONS:
        raise LookupError(f"no projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}")
    return PROJECTIONS[name][0]


def list_projections(args: argparse.Namespace) -> int:
    from workers.ops.projections import projection_rows  # noqa: PLC0415 -- after boot

    rows = projection_rows(_connect())
    headers = ["projection", "collection", "streams", "position", "lag", "rebuild", "rebuilt_at"]
    emit(args, rows, lambda r: table([[row[h] for h in headers] for row in r], headers))
    return 0


def _progress_printer() -> Any:
    last = [0.0]

    def show(progress: Progress) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        eta = progress.eta_seconds
        sys.stderr.write(
            f"{progress.phase}: {progress.commits}/{progress.total_commits} commits, "
            f"{progress.events} events, {progress.rate:,.0f} events/s, "
            f"ETA {'-' if eta is None else f'{eta:,.0f}s'}\n"
        )

    return show


def rebuild_projection(args: argparse.Namespace) -> int:
    from readstore.rebuild import Rebuild  # noqa: PLC0415

    database = _connect()
    kind = _projection(args.name)
    run = Rebuild(
        database,
        kind,
        batch_size=args.batch_size,
        dry_run=args.dry_run,
        report=_progress_printer(),
    )
    if run.state["last_commit"] and not args.dry_run:
        sys.stderr.write(f"resuming after {run.state['last_commit']}\n")
    outcome = run.run()
    data = {**vars(outcome), "events_per_second": round(outcome.rate, 1)}

    def text(d: dict[str, Any]) -> str:
        head = fields(
            [
                ("projection", d["projection"]),
                ("built in", d["collection"]),
                ("swapped", "yes" if d["swapped"] else "no (dry run)"),
                ("resumed", "yes" if d["resumed"] else "no"),
                ("events", d["events"]),
                ("caught up", d["caught_up"]),
                ("seconds", f"{d['seconds']:.1f}"),
                ("events/s", d["events_per_second"]),
            ]
        )
        if not args.dry_run:
            return head
        found = d["differences"]
        return head + "\n\n" + ("\n".join(found) if found else "no differences")

    emit(args, data, text)
    return 1 if args.dry_run and outcome.differences else 0


def show_analytics(args: argparse.Namespace) -> int:
    from readstore import analytics  # noqa: PLC0415
    from readstore.cache import query_cache  # noqa: PLC0415

    _connect()
    answers: dict[str, Any] = {}
    for _ in range(max(args.repeat, 1)):
        answers = {
            "revenue_by_day": analytics.revenue_by_day(args.start, args.end, args.token),
            "orders_by_status": analytics.orders_by_status(args.start, args.end, args.token),
            "top_products": analytics.top_products(args.start, args.end, token=args.token),
            "registrations_by_day": analytics.registrations_by_day(args.start, args.end),
        }
    data: dict[str, Any] = {
        k: [row.model_dump(mode="json") for row in a.value] for k, a in answers.items()
    }
    data["stale"] = any(a.stale for a in answers.values())
    data["query_cache"] = query_cache.stats()

    def text(d: dict[str, Any]) -> str:
        parts = []
        for key, rows in d.items():
            if isinstance(rows, list):
                headers = list(rows[0]) if rows else ["(none)"]
                parts.append(f"{key}\n" + table([list(r.values()) for r in rows], headers))
        parts.append(fields([("stale", d["stale"]), *d["query_cache"].items()]))
        return "\n\n".join(parts)

    emit(args, data, text)
    return 0
