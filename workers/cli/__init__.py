"""The ``sagaworks`` command line: one sub-command module per area, each with ``--json``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dramatiq.errors import DramatiqError
from pika.exceptions import AMQPError
from pymongo.errors import PyMongoError

from readstore.db import redact_url

#: Modules that add sub-commands; each has ``register(subparsers)``.
COMMAND_MODULES = [
    "workers.cli.service",
    "workers.cli.query",
    "workers.cli.sagas",
    "workers.cli.dlq",
    "workers.cli.status",
    "workers.cli.projections",
    "workers.cli.schema",
    "workers.cli.console",
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
        print(f"sagaworks: {redact_url(str(exc))}", file=sys.stderr)
        return 2
    except (PyMongoError, AMQPError, DramatiqError) as exc:
        reason = redact_url(str(exc)).split(", Timeout:")[0][:300]
        print(f"sagaworks: cannot reach a server ({type(exc).__name__}): {reason}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
