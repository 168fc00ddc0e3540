"""``sagaworks sagas``: list sagas by state and age, and show one with its timeline."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sagas.fulfilment import SagaStatus
from workers.cli.output import add_json_flag, emit, fields, table

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """``90s``, ``5m``, ``2h``, ``1d``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 2h, 1d)")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def register(subparsers: Any) -> None:
    sagas = subparsers.add_parser("sagas", help="inspect order-fulfilment sagas")
    targets = sagas.add_subparsers(dest="target", required=True, metavar="WHAT")

    listing = targets.add_parser(
        "list", help="sagas, newest first (oldest first with --older-than)"
    )
    listing.add_argument(
        "--state",
        choices=[s.value for s in SagaStatus],
        help="only sagas in this state (default: any)",
    )
    listing.add_argument(
        "--older-than", type=duration, metavar="DURATION", help="unchanged for this long (5m)"
    )
    listing.add_argument(
        "--stuck",
        action="store_true",
        help="only running sagas past their step deadline, and flagged ones (exit 1 if any)",
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many")
    add_json_flag(listing)
    listing.set_defaults(func=list_sagas)

    explore = targets.add_parser(
        "explore", help="run the saga in every message order (exhaustive), then random runs"
    )
    explore.add_argument("--runs", type=int, default=2000, help="random runs per scenario")
    explore.add_argument("--seed", type=int, default=1, help="random runs' seed (default 1)")
    explore.add_argument(
        "--budget",
        default="1,1,1,1,0",
        help="exhaustive: deadlines (time passing beyond a step's deadline),cancels,"
        "duplicates,failed sends,races (a message overtaken mid-handling) per run "
        "(default 1,1,1,1,0; a fifth number is optional)",
    )
    add_json_flag(explore)
    explore.set_defaults(func=run_explore)

    bench = targets.add_parser(
        "bench-sku", help="a SKU's load time and state size after N orders (events appended)"
    )
    bench.add_argument(
        "--orders",
        type=int,
        nargs="+",
        default=[1000, 100_000, 1_000_000],
        help="order counts to measure at (default 1000 100000 1000000)",
    )
    add_json_flag(bench)
    bench.set_defaults(func=run_bench_sku)

    show = targets.add_parser("show", help="one saga: state, deadline, pending, timeline")
    show.add_argument("order_id", type=UUID, metavar="ORDER_ID", help="the saga's order id")
    add_json_flag(show)
    show.set_defaults(func=show_saga)


def _store() -> Any:
    from dramatiq.brokers.stub import StubBroker  # noqa: PLC0415 -- sagas need only MongoDB

    from readstore.db import get_database  # noqa: PLC0415
    from sagas.store import SagaStore  # noqa: PLC0415
    from workers.boot import boot  # noqa: PLC0415
    from workers.runtime.settings import Settings  # noqa: PLC0415

    boot(Settings(), embedded_ok=False, broker=StubBroker())
    return SagaStore(get_database())


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    from sagas.store import saga_row  # noqa: PLC0415

    return saga_row(doc)


def list_sagas(args: argparse.Namespace) -> int:
    store = _store()
    if args.stuck:
        docs = store.stuck(datetime.now(UTC), args.limit)
    else:
        docs = store.find(args.state, args.older_than, args.limit)
    rows = [_row(d) for d in docs]
    emit(
        args,
        {"sagas": rows, "by_state": store.count_by_status()},
        lambda data: (
            table(
                [
                    (r["order_id"], r["state"], r["reason"], r["deadline"], r["updated_at"])
                    for r in rows
                ],
                ["order", "state", "reason", "deadline", "updated"],
            )
            + "\n\n"
            + ", ".join(f"{k}: {v}" for k, v in sorted(data["by_state"].items()))
        ),
    )
    return 1 if args.stuck and rows else 0


def run_explore(args: argparse.Namespace) -> int:
    from workers.workloads.exploration import SCENARIOS, Budget, explore, walk  # noqa: PLC0415

    budget = Budget(*(int(n) for n in args.budget.split(",")))
    results: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        exhaustive = explore(scenario, budget).summary()
        random_runs = walk(scenario, Budget(3, 1, 3, 2, 2), args.runs, args.seed).summary()
        results.append({"scenario": scenario.name, "exhaustive": exhaustive, "random": random_runs})
    emit(args, {"budget": args.budget, "results": results}, _explore_text)
    failed = sum(r["exhaustive"]["failed_runs"] + r["random"]["failed_runs"] for r in results)
    return 1 if failed else 0


def _explore_text(data: dict[str, Any]) -> str:
    rows = [
        (
            r["scenario"],
            r["exhaustive"]["orderings"],
            r["exhaustive"]["distinct_states"],
            r["exhaustive"]["seconds"],
            r["random"]["orderings"],
            r["random"]["seconds"],
            r["exhaustive"]["failed_runs"] + r["random"]["failed_runs"],
        )
        for r in data["results"]
    ]
    head = ["scenario", "orderings", "states", "s", "random runs", "s", "failed"]
    return f"budget {data['budget']} (deadlines,cancels,duplicates,failed sends,races)\n" + table(
        rows, head
    )


def run_bench_sku(args: argparse.Namespace) -> int:
    from workers.workloads.bench_sku import run  # noqa: PLC0415 -- heavy imports

    report = run(args.orders)
    text = report.pop("_text", "")
    emit(args, report, lambda _: text)
    return 0


def show_saga(args: argparse.Namespace) -> int:
    doc = _store().get(str(args.order_id))
    if doc is None:
        emit(args, {"saga": None}, lambda _: f"saga {args.order_id}: not found")
        return 1
    from sagas.store import timeline as saga_timeline  # noqa: PLC0415

    row = _row(doc)
    timeline = saga_timeline(doc)
    emit(args, {"saga": row, "timeline": timeline}, lambda _: _show_text(row, timeline))
    return 0


def _show_text(row: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    head = fields(
        [
            ("saga", f"order fulfilment {row['order_id']}"),
            ("state", row["state"]),
            ("reason", row["reason"]),
            ("deadline", row["deadline"]),
            ("pending", ", ".join(row["pending"]) or "none"),
            ("compensations", ", ".join(row["compensations"]) or "none"),
            ("version", row["version"]),
        ]
    )
    steps = table(
        [
            (
                e["at"],
                f"{e['from'] or '(start)'} -> {e['to']}",
                e["message_type"],
                e["message_id"],
                ", ".join(e["sent"]) or "-",
            )
            for e in timeline
        ],
        ["at", "transition", "caused by", "message id", "sent"],
    )
    return f"{head}\n\n{steps}"
