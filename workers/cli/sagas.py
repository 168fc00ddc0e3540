"""``sagaworks sagas``: list sagas by state and age, and show one with its timeline."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any
from uuid import UUID

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
    listing.add_argument("--state", help="only sagas in this state (e.g. charging, cancelled)")
    listing.add_argument(
        "--older-than", type=duration, metavar="DURATION", help="unchanged for this long (5m)"
    )
    listing.add_argument("--limit", type=int, default=50)
    add_json_flag(listing)
    listing.set_defaults(func=list_sagas)

    show = targets.add_parser("show", help="one saga: state, deadline, pending, timeline")
    show.add_argument("order_id", type=UUID, metavar="ORDER_ID")
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
    rows = [_row(d) for d in store.find(args.state, args.older_than, args.limit)]
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
