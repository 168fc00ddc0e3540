"""The console's pages and ``dlq list`` / ``dlq groups`` timed over a seeded dead-letter store."""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import uvicorn
from pydantic import SecretStr

from workers.console.app import Console, create_app
from workers.console.auth import Credentials
from workers.deadletters.operations import group_rows
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore
from workers.runtime.embedded import free_port
from workers.runtime.settings import Settings

TOKEN = "bench-token"


@contextmanager
def served(console: Console) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(console), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def fetch(url: str) -> float:
    """Seconds to GET ``url`` with the operator token (the body read to its end)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    begin = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
    return round(time.perf_counter() - begin, 3)


def best_of(url: str, runs: int = 3) -> float:
    return min(fetch(url) for _ in range(runs))


def pages(store: DeadLetterStore, broker: dramatiq.Broker, settings: Settings) -> dict[str, Any]:
    """Each console page's best time of three, and the CLI's list and groups."""
    settings = settings.model_copy(update={"console_token": SecretStr(TOKEN)})
    console = Console(settings, store.database, broker, Credentials.from_settings(settings))
    group = store.groups()[0]["_id"]
    entry = store.find(Selector(group=group), 1)[0]["_id"]
    quoted = urllib.parse.quote(group, safe="")
    report: dict[str, Any] = {}
    with served(console) as base:
        for name, path in (
            ("page_overview_s", "/"),
            ("page_dead_letters_s", "/dead-letters"),
            ("page_group_s", f"/dead-letters/groups/{quoted}"),
            ("page_message_s", f"/dead-letters/messages/{entry}"),
            ("page_confirm_group_s", f"/dead-letters/confirm?action=replay&group={quoted}"),
            ("page_sagas_s", "/sagas"),
        ):
            report[name] = best_of(base + path)
    report["cli_list_s"] = best_time(lambda: store.find(Selector(), 50))
    report["cli_groups_s"] = best_time(lambda: group_rows(store))
    return report


def best_time(fn: Any, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return round(min(times), 3)
