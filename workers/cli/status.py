"""``sagaworks status``: queues, dead letters, projection lag, sagas; non-zero when unhealthy."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from workers.cli.output import add_json_flag, emit, table


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="queue depths, dead letters, projection lag, sagas (exit 1: attention)"
    )
    status.add_argument("--max-lag", type=int, default=None, help="lag that needs attention")
    status.add_argument(
        "--prometheus", action="store_true", help="print Prometheus' text format instead"
    )
    status.add_argument(
        "--serve", type=int, metavar="PORT", help="serve the metrics over HTTP on PORT"
    )
    status.add_argument(
        "--deep",
        action="store_true",
        help="also run the audit (sagaworks audit, 30 s budget): broken invariants need attention",
    )
    add_json_flag(status)
    status.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    from readstore.db import get_database  # noqa: PLC0415 -- boot only when run
    from workers.cli.query import _connect  # noqa: PLC0415
    from workers.ops.status import status  # noqa: PLC0415
    from workers.runtime.settings import Settings  # noqa: PLC0415

    settings = Settings()
    if args.max_lag is not None:
        settings = settings.model_copy(update={"max_projection_lag": args.max_lag})
    if not settings.amqp():
        raise RuntimeError("set SAGAWORKS_AMQP_URL: status reads the queues from RabbitMQ")
    _connect()
    database = get_database()
    if args.serve:
        return serve(args.serve, lambda: status(settings, database))
    result = status(settings, database)
    deep = deep_audit(result, database, settings) if args.deep else {}
    if args.prometheus:
        from workers.ops.metrics import exposition  # noqa: PLC0415

        sys.stdout.write(exposition(lambda: result).decode())
    else:
        emit(args, {**result.asdict(), **deep}, _text)
    return 1 if result.attention else 0


def deep_audit(result: Any, database: Any, settings: Any) -> dict[str, Any]:
    """Run the audit and add each broken invariant to what needs attention."""
    from workers.ops.audit import audit  # noqa: PLC0415

    report = audit(database, budget_seconds=30.0, saga=settings.fulfilment_saga)
    findings = report.asdict()["findings"]
    result.attention += [
        f"invariant {name} broken ({findings[name]['count']}): {findings[name]['first'][0]}"
        for name in report.broken
    ]
    return {"audit": report.asdict()}


def serve(port: int, measure: Any) -> int:
    from prometheus_client import REGISTRY, start_http_server  # noqa: PLC0415

    from workers.ops.metrics import DramatiqCollector, StatusCollector  # noqa: PLC0415

    REGISTRY.register(StatusCollector(measure))
    REGISTRY.register(DramatiqCollector(None))  # what this host's worker processes wrote
    start_http_server(port)
    print(f"serving metrics on :{port}/metrics", file=sys.stderr)
    while True:
        time.sleep(3600)


def _num(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def _queue_row(q: dict[str, Any]) -> tuple[Any, ...]:
    if q.get("missing"):
        return (q["name"], "missing", "-", "-", "-", q["dead_letters"])
    counts = (_num(q[k]) for k in ("ready", "unacked", "delayed", "xq"))
    return (q["name"], *counts, q["dead_letters"])


def _text(data: dict[str, Any]) -> str:
    queues = table(
        [_queue_row(q) for q in data["queues"]],
        ["queue", "ready", "unacked", "delayed", "xq", "dead letters"],
    )
    projections = table(
        [
            (name, p["lag"], p["queued"], p["parked_streams"], p["parked_events"])
            for name, p in data["projections"].items()
        ],
        ["projection", "lag", "queued", "parked streams", "parked events"],
    )
    sagas = ", ".join(f"{k}: {v}" for k, v in sorted(data["sagas"].items())) or "(none)"
    verdict = "\n".join(f"  ! {note}" for note in data["attention"]) or "  healthy"
    notes = "".join(f"\nnote: {note}" for note in data.get("notes", []))
    return "\n\n".join(
        [
            queues + notes,
            projections,
            f"undispatched commits: {data['undispatched_commits']}",
            f"sagas: {sagas} (past their deadline: {data['overdue_sagas']})",
            f"attention:\n{verdict}",
        ]
    )
