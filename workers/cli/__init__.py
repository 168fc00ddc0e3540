"""The ``sagaworks`` command line: one sub-command module per area, each with ``--json``."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence

from dramatiq.errors import DramatiqError
from pika.exceptions import AMQPError
from pymongo.errors import PyMongoError

from readstore.db import redact_url
from workers.runtime.logs import configure_logging

#: Modules that add sub-commands; each has ``register(subparsers)``.
COMMAND_MODULES = [
    "workers.cli.service",
    "workers.cli.query",
    "workers.cli.sagas",
    "workers.cli.dlq",
    "workers.cli.status",
    "workers.cli.projections",
    "workers.cli.schema",
    "workers.cli.audit",
    "workers.cli.console",
]


#: Commands that keep running and log as they go; the others log only warnings unless -v.
LONG_RUNNING = {"worker", "relay"}
EXIT_CODES = """exit codes:
  0    done, and the answer is yes (healthy, committed, consistent)
  1    done, and the answer is no (a check failed; a command was rejected, dead-lettered
       or not answered in time)
  2    usage or input error (bad option, bad JSON, unknown id or type)
  3    a server (RabbitMQ, MongoDB) could not be reached
  4    done in part: nothing wrong in what was checked, but a time budget ran out (audit)
  130  interrupted; 141  the output pipe was closed"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagaworks",
        description="CQRS and event sourcing on Dramatiq, RabbitMQ and MongoDB.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    version = importlib.metadata.version("sagaworks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO (one-shot commands log warnings)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    show_defaults(parser)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help says its default (when it has one worth saying), in every command."""
    for action in parser._actions:  # argparse has no public walk over its actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                show_defaults(sub)
        elif action.help and "default" not in action.help and _worth_saying(action.default):
            action.help += " (default: %(default)s)"


def _worth_saying(default: object) -> bool:
    return default not in (None, False, [], argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose and args.command not in LONG_RUNNING:
        os.environ.setdefault("SAGAWORKS_LOG_LEVEL", "WARNING")  # no boot line for a one-shot
    # Logs go to standard error from the start: standard output is the command's answer.
    configure_logging(
        os.environ.get("SAGAWORKS_LOG_LEVEL", "INFO"),
        os.environ.get("SAGAWORKS_LOG_FORMAT", "auto"),
    )
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and let nothing flush into the pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
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
