"""``make chaos``: the fault-injection suite, long form; prints the results table.

python -m tests.chaos [--orders 300] [--rate 20] [--faults kill_worker:2,pause_store:20,...]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from tests.fault_runs import as_json, run_schedule, table
from tests.faults import Fault, Stack

DEFAULT = "none,kill_worker:2,pause_store:20,pause_store:45,kill_relay:30,restart_broker:10,soak"


def parse(spec: str) -> list[Fault]:
    faults = []
    for item in filter(None, spec.split(",")):
        kind, _, seconds = item.partition(":")
        faults.append(Fault(kind, float(seconds or 0)))
    return faults


def stop(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__)
    parser.add_argument("--orders", type=int, default=300, help="orders per fault")
    parser.add_argument("--rate", type=float, default=5.0, help="orders per second")
    parser.add_argument("--faults", default=DEFAULT, help="kind[:seconds],… in order")
    parser.add_argument(
        "--deadline", type=float, default=10.0, help="saga step deadline, seconds (default 10)"
    )
    parser.add_argument("--json", type=Path, help="also write the outcomes as JSON here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop)  # a terminated run still stops its broker and processes
    with (
        tempfile.TemporaryDirectory(prefix="sw-chaos-") as workdir,
        Stack.started(
            Path(workdir), SAGAWORKS_SAGA_STEP_DEADLINE_SECONDS=str(args.deadline)
        ) as stack,
    ):
        outcomes = run_schedule(stack, parse(args.faults), args.orders, args.rate)
    print(table(outcomes))
    for outcome in outcomes:
        if outcome.notes:
            print(f"- {outcome.fault}: {'; '.join(outcome.notes)[:600]}")
    if args.json:
        args.json.write_text(as_json(outcomes))
    return 0 if all(o.green for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
