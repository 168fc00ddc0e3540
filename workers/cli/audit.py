"""``sagaworks audit``: the fulfilment invariants against the live store (exit 1 names each one
broken), bounded by a time budget so it can run from cron."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from workers.cli.output import add_json_flag, emit


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="check stock, money, orders, sagas and read models against the log "
        "(exit 0: every invariant holds; 1: the ones broken are named)",
    )
    audit.add_argument(
        "--budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="stop after about this long; the next run resumes there (default 60)",
    )
    audit.add_argument(
        "--full", action="store_true", help="check the whole store in this run, unbounded"
    )
    audit.add_argument(
        "--grace",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="orders and sagas quiet for less than this are in flight, not judged (default 300)",
    )
    add_json_flag(audit)
    audit.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from readstore.db import get_database  # noqa: PLC0415 -- boot only when run
    from workers.cli.query import _connect  # noqa: PLC0415
    from workers.ops.audit import audit  # noqa: PLC0415
    from workers.runtime.settings import Settings  # noqa: PLC0415

    _connect()
    report = audit(
        get_database(),
        budget_seconds=args.budget,
        grace=timedelta(seconds=args.grace),
        saga=Settings().fulfilment_saga,
        full=args.full,
    )
    emit(args, report.asdict(), text)
    return 0 if report.healthy else 1


def text(data: dict[str, Any]) -> str:
    checked = ", ".join(f"{k} {v}" for k, v in sorted(data["checked"].items())) or "nothing"
    lines = [f"audit: {checked} checked in {data['elapsed_seconds']} s"]
    for name in data["broken"]:
        found = data["findings"][name]
        lines.append(f"  BROKEN {name} ({found['count']})")
        lines += [f"    {detail}" for detail in found["first"]]
    lines += [f"  not reached in the budget: {what}" for what in data["not_reached"]]
    if data["money"]:
        money = data["money"]
        lines.append(
            f"  money: charged {money['charged']} - refunded {money['refunded']}"
            f" (confirmed totals {money['confirmed_total']})"
        )
    lines.append("  every invariant holds" if data["healthy"] else "  invariants broken")
    return "\n".join(lines)
