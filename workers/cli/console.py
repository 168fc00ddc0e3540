"""``sagaworks console``: the ops console in the browser (dead letters, sagas, projections)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    console = subparsers.add_parser(
        "console", help="serve the ops console (default http://127.0.0.1:8077/)"
    )
    console.add_argument("--host", help="address to bind (default 127.0.0.1: this host only)")
    console.add_argument("--port", type=int, help="port (default 8077)")
    console.add_argument("--read-only", action="store_true", help="refuse every action")
    console.set_defaults(func=run_console)


def run_console(args: argparse.Namespace) -> int:
    from workers.console.serve import serve  # noqa: PLC0415 -- heavy imports only for this command
    from workers.runtime.settings import Settings  # noqa: PLC0415

    settings = Settings()
    update: dict[str, Any] = {"console_read_only": args.read_only or settings.console_read_only}
    if args.host:
        update["console_host"] = args.host
    if args.port is not None:
        update["console_port"] = args.port
    return serve(settings.model_copy(update=update))
