"""The ``sagaworks`` command line: one sub-command module per area, each with ``--json``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that add sub-commands; each has ``register(subparsers)``.
COMMAND_MODULES = [
    "workers.cli.service",
    "workers.cli.query",
    "workers.cli.sagas",
    "workers.cli.dlq",
    "workers.cli.status",
    "workers.cli.projections",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagaworks",
        description="CQRS and event sourcing on Dramatiq, RabbitMQ and MongoDB.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (LookupError, ValueError, RuntimeError) as exc:
        print(f"sagaworks: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
