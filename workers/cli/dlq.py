"""``sagaworks dlq``: list, group, show, replay, purge, archive and ingest dead letters."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.cli.output import add_json_flag, emit, fields, table

_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since(value: str) -> datetime:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 time."""
    match = _AGO.match(value)
    if match:
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(subparsers: Any) -> None:
    dlq = subparsers.add_parser("dlq", help="dead letters: what failed, why, and replay it")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="dead letters, newest first")
    _filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="at most this many")
    listing.set_defaults(func=run_list)

    groups = actions.add_parser("groups", help="dead letters by cause (error type + reason)")
    groups.add_argument(
        "--recount", action="store_true", help="rebuild the group counts from the entries first"
    )
    add_json_flag(groups)
    groups.set_defaults(func=run_groups)

    show = actions.add_parser("show", help="one dead letter: envelope, traceback, history")
    show.add_argument("id", help="the dead letter's id (as `dlq list` shows it)")
    add_json_flag(show)
    show.set_defaults(func=run_show)

    for name, help_text, func in (
        ("replay", "send back to the original queue (fresh retries, same id)", run_replay),
        ("purge", "delete for good", run_purge),
        ("archive", "keep, but out of the dead letters", run_archive),
    ):
        action = actions.add_parser(name, help=help_text)
        _selectors(action)
        action.set_defaults(func=func)

    ingest = actions.add_parser("ingest", help="drain every .XQ queue into the store now")
    add_json_flag(ingest)
    ingest.set_defaults(func=run_ingest)

    bench = actions.add_parser("bench", help="time list, groups and replay over N dead letters")
    bench.add_argument("--count", type=int, default=10_000, help="dead letters to create")
    bench.add_argument("--replay", type=int, default=None, help="replay only N of them")
    bench.add_argument(
        "--lock", default=None, help="a file to flock from the end of the seeding to the end"
    )
    add_json_flag(bench)
    bench.set_defaults(func=run_bench)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue", help="queue name (without the deployment's prefix); 'outbox': parked commits"
    )
    parser.add_argument("--actor", help="only this actor's dead letters")
    parser.add_argument("--error", help="exception type, e.g. InvalidMessageError")
    parser.add_argument("--since", type=since, help="e.g. 30m, 2h, 7d or an ISO time")
    parser.add_argument(
        "--state",
        default="dead",
        choices=["dead", "replaying", "replayed", "resolved", "archived", "all"],
        help="only dead letters in this state",
    )
    add_json_flag(parser)


def _selectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids")
    parser.add_argument("--group", help="a group key from `dlq groups`")
    parser.add_argument("--queue", help="every dead letter of this queue")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--by", default=None, help="who does it (default: the OS user)")
    if parser.prog.endswith("replay"):
        parser.add_argument(
            "--batch", type=int, default=None, help="entries per transaction (100 ids, 1000 else)"
        )
        parser.add_argument(
            "--lease", type=float, default=60.0, help="seconds a replay owns what it claimed"
        )
    add_json_flag(parser)


def _store() -> Any:
    from workers.cli.query import _connect  # noqa: PLC0415 -- boot only when run
    from workers.deadletters.store import DeadLetterStore  # noqa: PLC0415

    _connect()
    return DeadLetterStore()


def _queue(name: str | None) -> str | None:
    if name is None or name == "outbox":  # commits the relay parked are not on a queue
        return name
    from workers.runtime.settings import Settings  # noqa: PLC0415

    prefix = Settings().queue_prefix
    return name if name.startswith(prefix) else prefix + name


def _selector(args: argparse.Namespace) -> Any:
    from workers.deadletters.selector import Selector  # noqa: PLC0415
    from workers.deadletters.store import State  # noqa: PLC0415

    state = getattr(args, "state", "dead")
    return Selector(
        ids=tuple(getattr(args, "ids", ()) or ()),
        queue=_queue(args.queue),
        actor=getattr(args, "actor", None),
        error=getattr(args, "error", None),
        group=getattr(args, "group", None),
        since=getattr(args, "since", None),
        state=None if state == "all" or getattr(args, "ids", None) else State(state),
    )


def run_list(args: argparse.Namespace) -> int:
    from workers.deadletters.store import summary  # noqa: PLC0415

    rows = [summary(d) for d in _store().find(_selector(args), args.limit)]
    emit(args, rows, _list_text)
    return 0


def _list_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no dead letters"
    cells = [
        (r["id"], r["queue"], r["error_type"], _cut(r["reason"], 60), r["attempts"], r["count"])
        for r in rows
    ]
    return table(cells, ["id", "queue", "error", "reason", "attempts", "times"])


def _cut(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def run_groups(args: argparse.Namespace) -> int:
    from workers.deadletters.operations import group_rows  # noqa: PLC0415

    store = _store()
    if args.recount:
        store.recount()
    emit(args, group_rows(store), _groups_text)
    return 0


def _groups_text(groups: list[dict[str, Any]]) -> str:
    if not groups:
        return "no dead letters"
    cells = [_group_row(g) for g in groups]
    headers = ["group", "count", "queues", "first seen", "last seen", "example", "cause"]
    return table(cells, headers)


def _group_row(g: dict[str, Any]) -> tuple[Any, ...]:
    queues = ",".join(sorted(g["queues"]))
    cause = _cut(g.get("cause") or g["reason"], 60)
    return (g["group"], g["count"], queues, g["first_seen"], g["last_seen"], g["example"], cause)


def run_show(args: argparse.Namespace) -> int:
    from workers.deadletters.operations import detail  # noqa: PLC0415

    doc = detail(_store(), args.id)
    if doc is None:
        raise LookupError(f"no dead letter {args.id}")
    emit(args, doc, _show_text)
    return 0


def _show_text(doc: dict[str, Any]) -> str:
    keys = ["id", "state", "queue", "actor", "message_type", "correlation_id", "error_type"]
    keys += ["reason", "group", "attempts", "count", "replays", "first_failed_at"]
    keys += ["last_failed_at", "source"]
    lines = [fields([(k.replace("_", " "), doc.get(k)) for k in keys]), "", "history:"]
    for event in doc.get("history", []):
        detail = event.get("by") or event.get("error_type") or ""
        lines.append(f"  {event.get('at')}  {event.get('event')}  {detail}")
    if doc.get("message"):
        lines += ["", "message (current version):", json.dumps(doc["message"], indent=2)]
    lines += ["", "traceback:", doc.get("traceback") or "  (none recorded)", "", "envelope:"]
    lines.append(doc.get("envelope") or doc.get("raw_body") or "(none)")
    return "\n".join(lines)


def _require_selection(args: argparse.Namespace, verb: str) -> None:
    if not (args.ids or args.group or args.queue):
        raise ValueError(f"say what to {verb}: IDs, --group or --queue")


def _chosen(args: argparse.Namespace, verb: str) -> tuple[Any, list[str]]:
    _require_selection(args, verb)
    store = _store()
    return store, store.ids(_selector(args))


def _confirm(args: argparse.Namespace, verb: str, count: int) -> bool:
    if args.yes or args.dry_run or count == 0:
        return True
    if not sys.stdin.isatty():
        raise RuntimeError(f"{count} dead letter(s) would be {verb}: pass --yes to confirm")
    answer = input(f"{verb} {count} dead letter(s)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _by(args: argparse.Namespace) -> str:
    return str(args.by or getpass.getuser())


def run_replay(args: argparse.Namespace) -> int:
    from workers.cli.service import connect  # noqa: PLC0415
    from workers.deadletters.claims import settle  # noqa: PLC0415
    from workers.deadletters.publisher import publisher  # noqa: PLC0415
    from workers.deadletters.store import DeadLetterStore  # noqa: PLC0415

    _require_selection(args, "replay")
    runtime = connect()
    try:
        store = DeadLetterStore()
        with publisher(runtime.broker) as send:
            settle(store, send)  # an interrupted replay's entries are resolved before choosing
        count = len(args.ids) if args.ids else store.count(_selector(args))
        if not _confirm(args, "replayed", count):
            return 1
        report = _replayed(args, store, runtime.broker)
    finally:
        runtime.close()
    verb = "would replay" if args.dry_run else "replayed"
    emit(args, report.asdict(), lambda r: _report_text(r, verb))
    return 0 if not report.skipped else 1


def _replayed(args: argparse.Namespace, store: Any, broker: Any) -> Any:
    """Replay the ids given, or the selection page by page (never reading all its ids)."""
    from workers.deadletters.replay import replay, replay_selected  # noqa: PLC0415

    options = {"dry_run": args.dry_run, "lease": args.lease, "store": store, "broker": broker}
    options |= {"batch": args.batch} if args.batch else {}
    if args.ids:
        return replay(list(args.ids), _by(args), **options)
    return replay_selected(_selector(args), _by(args), **options)


def _report_text(report: dict[str, Any], verb: str) -> str:
    lines = [f"{verb} {report['replayed']} dead letter(s)"]
    lines += [f"  skipped {i}: {why}" for i, why in report["skipped"].items()]
    return "\n".join(lines)


def run_purge(args: argparse.Namespace) -> int:
    return _retire(args, "purged")


def run_archive(args: argparse.Namespace) -> int:
    return _retire(args, "archived")


def _retire(args: argparse.Namespace, verb: str) -> int:
    from workers.deadletters.operations import retire  # noqa: PLC0415

    store, ids = _chosen(args, verb.rstrip("d"))
    if not _confirm(args, verb, len(ids)):
        return 1
    done = len(ids) if args.dry_run else retire(store, ids, verb, _by(args))
    data = {verb: done, "dry_run": args.dry_run}
    emit(args, data, lambda d: f"{'would be ' if args.dry_run else ''}{verb}: {done}")
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    from workers.deadletters.ingest import ingester  # noqa: PLC0415
    from workers.runtime.settings import Settings  # noqa: PLC0415

    _store()
    counts = ingester(Settings()).run_once()
    data = {"ingested": sum(counts.values()), "queues": counts}
    emit(args, data, lambda d: f"ingested {d['ingested']} dead letter(s) from .XQ")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from workers.workloads.bench_dlq import run  # noqa: PLC0415 -- heavy imports only for this command

    report = run(count=args.count, replayed=args.replay, lock=args.lock)
    emit(args, report, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 0
