"""Projections: lag, the last rebuild and its progress; start a rebuild (in the background)."""

from __future__ import annotations

import threading

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from readstore.rebuild import Rebuild
from workers.console.pages import Console, redirect, render
from workers.ops.projections import projection_rows

log = structlog.get_logger("sagaworks.console")


async def projections(request: Request) -> Response:
    console: Console = request.app.state.console
    rows = await run_in_threadpool(projection_rows, console.database)
    running = {name for name, thread in console.rebuilds.items() if thread.is_alive()}
    return render(request, "projections.html", rows=rows, running=running)


def start_rebuild(console: Console, name: str, who: str) -> None:
    """Run ``name``'s rebuild in a thread of the console (at most one per projection)."""
    from workers.subscribers.projections import PROJECTIONS  # noqa: PLC0415 -- after boot

    if name not in PROJECTIONS:
        raise LookupError(f"no projection {name!r}")
    running = console.rebuilds.get(name)
    if running is not None and running.is_alive():
        return
    rebuild = Rebuild(console.database, PROJECTIONS[name][0])
    thread = threading.Thread(target=rebuild.run, name=f"rebuild-{name}", daemon=True)
    console.rebuilds[name] = thread
    thread.start()
    log.info("projection_rebuild.started", projection=name, by=who)


async def rebuild(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.read_only:
        return PlainTextResponse("the console is read-only", status_code=403)
    name = request.path_params["name"]
    try:
        await run_in_threadpool(start_rebuild, console, name, request.state.operator)
    except LookupError as exc:
        return PlainTextResponse(str(exc), status_code=404)
    return redirect("/projections")


ROUTES = [
    Route("/projections", projections),
    Route("/projections/{name}/rebuild", rebuild, methods=["POST"]),
]
