"""Sagas: the stuck ones first, then by state and age; one saga's timeline and pending commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sagas.store import SagaStore, saga_row, timeline
from workers.console.pages import Console, render
from workers.ops.status import sagas_by_state, stuck_sagas

PAGE = 50
AGES = {"": None, "1m": 60, "5m": 300, "1h": 3600, "1d": 86400}


def listing(console: Console, state: str | None, age: str) -> dict[str, Any]:
    seconds = AGES.get(age)
    older_than = timedelta(seconds=seconds) if seconds else None
    store = SagaStore(console.database)
    return {
        "stuck": [saga_row(d) for d in stuck_sagas(console.database, limit=PAGE)],
        "sagas": [saga_row(d) for d in store.find(state or None, older_than, PAGE)],
        "by_state": sagas_by_state(console.database),
    }


async def sagas(request: Request) -> Response:
    state = request.query_params.get("state", "")
    age = request.query_params.get("age", "")
    found = await run_in_threadpool(listing, request.app.state.console, state, age)
    return render(request, "sagas.html", state=state, age=age, ages=list(AGES), **found)


async def saga(request: Request) -> Response:
    console: Console = request.app.state.console
    saga_id = request.path_params["saga_id"]
    doc = await run_in_threadpool(SagaStore(console.database).get, saga_id)
    if doc is None:
        return PlainTextResponse(f"no saga {saga_id}", status_code=404)
    pending = doc.get("pending", [])
    context = {"row": saga_row(doc), "timeline": timeline(doc), "pending": pending}
    return render(request, "saga.html", **context)


ROUTES = [Route("/sagas", sagas), Route("/sagas/{saga_id}", saga)]
