"""Sub-commands that run the service: ``worker``, ``relay``, ``publish``, ``demo``, ``bench``."""

from __future__ import annotations

import argparse
import json
import os
import threading
from datetime import timedelta
from typing import Any

from messages import Command, registry
from workers.boot import Runtime, boot
from workers.cli.output import add_json_flag, emit, fields
from workers.middleware.metrics import worker_environment
from workers.runtime.logs import configure_logging
from workers.runtime.settings import Settings


def register(subparsers: Any) -> None:
    worker = subparsers.add_parser("worker", help="run the actors on RabbitMQ (Dramatiq workers)")
    worker.add_argument("--queues", nargs="+", metavar="Q", help="only these queues")
    worker.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    worker.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    worker.set_defaults(func=run_worker)

    relay = subparsers.add_parser("relay", help="re-send commits left undispatched (the outbox)")
    relay.add_argument("--once", action="store_true", help="one pass, then exit")
    add_json_flag(relay)
    relay.set_defaults(func=run_relay)

    publish = subparsers.add_parser("publish", help="publish a command (or event) by type")
    publish.add_argument("type", help="message type, e.g. PlaceOrder")
    publish.add_argument("--data", required=True, help="the message's data as a JSON object")
    publish.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the commit (0: don't)"
    )
    add_json_flag(publish)
    publish.set_defaults(func=run_publish)

    demo = subparsers.add_parser("demo", help="run the whole service in one process, end to end")
    demo.add_argument("--orders", type=int, default=200, help="orders to place (default 200)")
    demo.add_argument("--customers", type=int, default=20, help="customers (default 20)")
    demo.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    demo.add_argument("--console", action="store_true", help="then serve the ops console on it")
    add_json_flag(demo)
    demo.set_defaults(func=run_demo)

    bench = subparsers.add_parser("bench", help="measure throughput on the real RabbitMQ")
    bench.add_argument("--commands", type=int, default=1000, help="commands per run (default 1000)")
    bench.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    bench.add_argument("--saga", action="store_true", help="orders through the fulfilment saga")
    bench.add_argument(
        "--processes",
        type=int,
        default=0,
        help="--saga: run the workers as this many `sagaworks worker` processes (0: in this one)",
    )
    bench.add_argument("--orders", type=int, default=300, help="--saga: orders (default 300)")
    bench.add_argument(
        "--no-read-models",
        dest="read_models",
        action="store_false",
        help="--saga: publish the events to the saga alone, none to the projections "
        "(the write side's ceiling; worker in this process only)",
    )
    bench.add_argument(
        "--rate", type=float, default=10.0, help="--saga: orders per second (0: all at once)"
    )
    add_json_flag(bench)
    bench.set_defaults(func=run_bench)


def connect(settings: Settings | None = None) -> Runtime:
    """Boot against the configured servers; both URLs are required outside the demo."""
    settings = settings or Settings()
    if not settings.amqp_url:
        raise RuntimeError("set SAGAWORKS_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/)")
    return boot(settings, embedded_ok=False)


def run_worker(args: argparse.Namespace) -> int:
    from dramatiq.cli import main as dramatiq_main  # noqa: PLC0415 -- only this command needs it
    from dramatiq.cli import make_argument_parser  # noqa: PLC0415

    settings = Settings()
    if not settings.amqp_url or not settings.mongodb_url:
        raise RuntimeError("a worker needs SAGAWORKS_AMQP_URL and SAGAWORKS_MONGODB_URL")
    configure_logging(settings.log_level, settings.log_format)
    if settings.dramatiq_metrics:  # the processes share Dramatiq's figures through files
        os.environ.update(worker_environment())
    argv = ["workers.app", "--processes", str(args.processes), "--threads", str(args.threads)]
    argv.append("--skip-logging")  # every process logs through structlog, JSON in production
    if args.queues:
        argv += ["--queues", *(settings.queue_prefix + q for q in args.queues)]
    parsed = make_argument_parser().parse_args(argv)  # type: ignore[no-untyped-call]
    return int(dramatiq_main(parsed) or 0)  # type: ignore[no-untyped-call]


def run_relay(args: argparse.Namespace) -> int:
    from workers.write.eventstore import EventStore  # noqa: PLC0415 -- after boot
    from workers.write.outbox import Relay  # noqa: PLC0415

    runtime = connect()
    relay = Relay(EventStore(), timedelta(seconds=runtime.settings.relay_grace_seconds))
    if args.once:
        sent = relay.run_once()
        emit(args, {"redispatched": sent}, lambda d: f"re-sent {d['redispatched']} commit(s)")
        return 0
    stop = threading.Event()
    try:
        relay.run_forever(runtime.settings.relay_interval_seconds, stop)
    finally:
        runtime.close()
    return 0


def run_publish(args: argparse.Namespace) -> int:
    """Publish; then say whether the command was committed, rejected, or only accepted.

    On RabbitMQ the worker's answer comes back on the AMQP ``reply_to``; on the in-process
    broker the store is polled. Exit 0: committed (or a duplicate of a committed command, or
    published, for an event or ``--wait 0``); 1: rejected or dead-lettered, with the reason;
    4: accepted by RabbitMQ but not answered in time.
    """
    message = _parse_message(args)
    runtime = connect()
    try:
        outcome = _publish_and_wait(message, args.wait, runtime)
    finally:
        runtime.close()
    result = {"message_id": str(message.message_id), **outcome}
    emit(args, result, _publish_text)
    return PUBLISH_EXIT[result["outcome"]]


def _publish_and_wait(message: Any, wait: float, runtime: Runtime) -> dict[str, Any]:
    from workers.publishing import publish  # noqa: PLC0415 -- after boot
    from workers.rpc import publish_awaiting  # noqa: PLC0415

    url = runtime.settings.amqp()
    if not isinstance(message, Command) or wait <= 0:
        publish(message)
        return {"outcome": "published", "token": None, "reason": None}
    if not url:  # the in-process broker has no reply_to: poll the store
        return _await_outcome(publish(message), wait)
    answer = publish_awaiting(message, url, wait, runtime.broker)
    if answer is None:
        return {"outcome": "accepted", "token": None, "reason": None}
    kind = {"duplicate": "committed", "dead_lettered": "rejected"}.get(
        answer.outcome, answer.outcome
    )
    reason = answer.reason or answer.error
    return {"outcome": kind, "token": answer.token, "reason": reason, "answer": answer.outcome}


#: Exit status by outcome: committed and published are success, rejected a failure.
PUBLISH_EXIT = {"committed": 0, "published": 0, "rejected": 1, "accepted": 4}


def _parse_message(args: argparse.Namespace) -> Any:
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise ValueError(f"--data is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("--data must be a JSON object")
    return registry.get(args.type).model_validate(data)


def _await_outcome(receipt: Any, wait: float) -> dict[str, Any]:
    """Poll for the commit and for a dead letter of the command, whichever comes first."""
    from readstore.consistency import wait_until  # noqa: PLC0415 -- after boot
    from workers.deadletters.store import DEAD, DeadLetterStore  # noqa: PLC0415

    store = DeadLetterStore()
    found: dict[str, Any] = {"outcome": "accepted", "token": None, "reason": None}

    def settled() -> bool:
        token = receipt.wait(0)
        if token is not None:
            found.update(outcome="committed", token=str(token))
            return True
        dead = store.get(receipt.message_id)
        if dead is not None and dead.get("state") == DEAD:
            found.update(outcome="rejected", reason=dead.get("reason") or dead.get("error_type"))
            return True
        return False

    wait_until(settled, wait, first_pause=0.05)
    return found


def _publish_text(d: dict[str, Any]) -> str:
    shown = {
        "committed": f"committed, token {d['token']}",
        "published": "published",
        "rejected": f"rejected: {d['reason']}",
        "accepted": "accepted, not yet committed (see `sagaworks dlq list` if it never is)",
    }[d["outcome"]]
    return fields([("message id", d["message_id"]), ("outcome", shown)])


def run_demo(args: argparse.Namespace) -> int:
    from workers.console.serve import after_demo, kept_for_console  # noqa: PLC0415
    from workers.workloads.demo import run  # noqa: PLC0415 -- heavy imports only for this command

    with kept_for_console(args.console):
        summary = run(orders=args.orders, customers=args.customers, threads=args.threads)
        text = summary.pop("_text", "")
        emit(args, summary, lambda _: text)
        if args.console:
            after_demo(summary["database"])
    return 0 if summary.get("consistent") else 1


def run_bench(args: argparse.Namespace) -> int:
    if args.saga:
        from workers.workloads.bench_saga import run as run_saga  # noqa: PLC0415

        report = run_saga(
            orders=args.orders,
            rate=args.rate,
            threads=args.threads,
            processes=args.processes,
            read_models=args.read_models,
        )
        text = report.pop("_text", "")
        emit(args, report, lambda _: text)
        return 0
    from workers.workloads.bench import run  # noqa: PLC0415 -- heavy imports only for this command

    report = run(commands=args.commands, threads=args.threads)
    text = report.pop("_text", "")
    emit(args, report, lambda _: text)
    return 0
