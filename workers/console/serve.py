"""Running the console: ``sagaworks console``, and after ``sagaworks demo --console``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from dramatiq import Worker

from readstore.db import get_database
from workers.boot import Runtime, boot
from workers.console.app import Console, create_app
from workers.console.auth import Credentials
from workers.runtime.embedded import EmbeddedMongo
from workers.runtime.settings import Settings


def console_for(runtime: Runtime) -> Console:
    credentials = Credentials.from_settings(runtime.settings)
    return Console(runtime.settings, get_database(), runtime.broker, credentials)


def announce(console: Console) -> None:
    """Where the console is and how to sign in: a generated token is shown once, here."""
    settings = console.settings
    sys.stderr.write(
        f"sagaworks console on http://{settings.console_host}:{settings.console_port}/\n"
    )
    if settings.console_token is None and console.credentials.token:
        sys.stderr.write(f"operator token (made for this run): {console.credentials.token}\n")


def serve(settings: Settings) -> int:
    """Boot against the configured servers (or the embedded ones) and serve until stopped.

    Without RabbitMQ the broker is in this process, so a worker runs here too: what the
    console replays is then handled."""
    runtime = boot(settings)
    worker = None if settings.amqp_url else Worker(runtime.broker, worker_threads=2)
    if worker is not None:
        worker.start()
    console = console_for(runtime)
    announce(console)
    try:
        uvicorn.run(
            create_app(console),
            host=settings.console_host,
            port=settings.console_port,
            log_level="warning",
        )
    finally:
        if worker is not None:
            worker.stop()
        runtime.close()
    return 0


@contextmanager
def kept_for_console(enabled: bool) -> Iterator[None]:
    """Around ``sagaworks demo``: without a configured MongoDB, an embedded one that outlives
    the demo (the demo stops the one it starts), so the console can show what it did."""
    if not enabled or Settings().mongodb():
        yield
        return
    server = EmbeddedMongo.start()
    os.environ["SAGAWORKS_MONGODB_URL"] = server.url
    try:
        yield
    finally:
        server.stop()


def after_demo(database: str) -> int:
    """Serve the console on the database the demo kept."""
    return serve(Settings(mongodb_db=database))
