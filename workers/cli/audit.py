"""``sagaworks audit``: the fulfilment invariants against the live store (exit 1 names each one
broken), bounded by a time budget so it can run from cron (exit 4: the budget ran out first)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from workers.cli.output import add_json_flag, emit


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="check stock, money, orders, sagas and read models against the log",
        description="Check stock, money, orders, sagas and read models against the log. "
        "With a budget (the default) each run checks the next slices of the orders and the "
        "SKUs' new commits, and the next run resumes where it stopped, so every order is "
        "checked once per cycle of runs; --full checks everything in one read of the log.",
        epilog="exit status: 0 every invariant holds and everything was checked; "
        "1 an invariant is broken (each is named); 4 nothing broken in what was checked, "
        "but the budget ran out first (the next run resumes; 'not reached' names the rest)",
    )
    audit.add_argument(
        "--budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="stop after about this long; the next run resumes there (default 60)",
    )
    audit.add_argument(
        "--full",
        action="store_true",
        help="check the whole store in this run, in one read of the log, unbounded",
    )
    audit.add_argument(
        "--exact-read-models",
        action="store_true",
        help="also compare every field of every read model with a rebuild from the log "
        "(as 'projections verify': several folds of the whole log, much slower)",
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
        exact_read_models=args.exact_read_models,
    )
    emit(args, report.asdict(), text)
    return report.exit_code


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
    if not data["healthy"]:
        lines.append("  invariants broken")
    elif data["complete"]:
        lines.append("  every invariant holds")
    else:
        lines.append("  nothing broken in what was checked; incomplete: the budget ran out")
    return "\n".join(lines)
