"""``sagaworks projections`` (list, rebuild, verify) and ``sagaworks analytics`` (the dashboard)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from tqdm import tqdm

from readstore.consistency import ConsistencyToken
from readstore.fold import Progress
from workers.cli.output import add_json_flag, emit, fields, table


def register(subparsers: Any) -> None:
    projections = subparsers.add_parser("projections", help="list, rebuild, verify read models")
    actions = projections.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="each projection: collection, position, lag")
    add_json_flag(listing)
    listing.set_defaults(func=list_projections)

    rebuild = actions.add_parser("rebuild", help="fold the event store into it, then swap")
    rebuild.add_argument("name", help="the projection (see `projections list`)")
    rebuild.add_argument("--dry-run", action="store_true", help="only compare with the log")
    rebuild.add_argument(
        "--settle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait this long for every worker to see the rebuild before reading the log",
    )
    add_json_flag(rebuild)
    rebuild.set_defaults(func=rebuild_projection)

    verify = actions.add_parser("verify", help="compare read models with a rebuild from the log")
    verify.add_argument("names", nargs="*", help="projections to verify (default: all)")
    add_json_flag(verify)
    verify.set_defaults(func=verify_projections)

    analytics = subparsers.add_parser("analytics", help="the dashboard's figures")
    analytics.add_argument(
        "--from", dest="start", type=date.fromisoformat, metavar="DAY", help="first day (ISO)"
    )
    analytics.add_argument(
        "--to", dest="end", type=date.fromisoformat, metavar="DAY", help="last day (ISO)"
    )
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
    return 0 if all(row["lag"] is not None for row in rows) else 1


class _Bar:
    """A tqdm progress bar on stderr per phase (commits folded, then documents written)."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm[Any]] = {}

    def __call__(self, progress: Progress) -> None:
        phase = progress.phase
        done = progress.commits if phase == "fold" else progress.documents
        if phase not in self.bars:
            total = progress.total_commits if phase == "fold" else None
            unit = "commit" if phase == "fold" else "doc"
            self.bars[phase] = tqdm(total=total, unit=unit, desc=phase, file=sys.stderr)
        bar = self.bars[phase]
        bar.update(done - bar.n)
        bar.set_postfix(events=progress.events, refresh=False)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def rebuild_projection(args: argparse.Namespace) -> int:
    from readstore.lease import REGISTRY_TTL  # noqa: PLC0415
    from readstore.rebuild import Rebuild  # noqa: PLC0415

    if args.dry_run:
        args.names = [args.name]
        return verify_projections(args)
    database = _connect()
    bar = _Bar()
    try:
        settle = {} if args.settle is None else {"settle_seconds": max(args.settle, REGISTRY_TTL)}
        outcome = Rebuild(database, _projection(args.name), report=bar, **settle).run()
    finally:
        bar.close()
    data = {**vars(outcome), "events_per_second": round(outcome.rate, 1)}

    def text(d: dict[str, Any]) -> str:
        return fields(
            [
                ("projection", d["projection"]),
                ("built in", d["collection"]),
                ("swapped", "yes" if d["swapped"] else "no"),
                ("events", d["events"]),
                ("documents", d["documents"]),
                ("reconciled", d["reconciled"]),
                ("seconds", f"{d['seconds']:.1f}"),
                ("events/s", d["events_per_second"]),
            ]
        )

    emit(args, data, text)
    return 0


def verify_projections(args: argparse.Namespace) -> int:
    from workers.ops.verify import verify_read_models  # noqa: PLC0415

    database = _connect()
    report = verify_read_models(database, args.names or None)

    def text(d: dict[str, Any]) -> str:
        rows = [[p["projection"], p["documents"], p["different"]] for p in d["projections"]]
        found = [f"{p['projection']}: {x}" for p in d["projections"] for x in p["differences"]]
        head = table(rows, ["projection", "documents", "different"])
        return head + "\n\n" + ("\n".join(found) if found else "every read model equals a rebuild")

    emit(args, report.asdict(), text)
    return 0 if report.consistent else 1


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
