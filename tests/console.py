"""Helpers shared by the console's tests: the app on the stub broker, served for a browser."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import uvicorn
from dramatiq.brokers.stub import StubBroker
from pydantic import SecretStr
from pymongo.database import Database

from readstore.db import Document
from workers.console.app import Console, create_app
from workers.console.auth import Credentials
from workers.runtime.embedded import free_port
from workers.runtime.settings import Settings

TOKEN = "test-operator-token"


def make_console(
    settings: Settings, database: Database[Document], broker: dramatiq.Broker, **changes: object
) -> Console:
    update: dict[str, object] = {"console_token": SecretStr(TOKEN), **changes}
    if isinstance(broker, StubBroker):
        update["amqp_url"] = None  # the queues shown are the in-process broker's
    settings = settings.model_copy(update=update)
    credentials = Credentials.from_settings(settings)
    return Console(settings, database, broker, credentials)


@contextmanager
def served(console: Console) -> Iterator[str]:
    """The console on a free local port in a thread of this process; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(console), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("the console did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
