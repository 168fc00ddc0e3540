"""The overview: queues, dead letters by queue, projection lag, sagas, health; refreshing."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from workers.console.pages import Console, render
from workers.ops.status import Status, status


def measure(console: Console) -> Status:
    """``sagaworks status``'s figures, on the console's database and broker."""
    return status(console.settings, console.database, console.broker)


async def overview(request: Request) -> Response:
    figures = await run_in_threadpool(measure, request.app.state.console)
    return render(request, "overview.html", status=figures.asdict(), fragment=False)


async def overview_figures(request: Request) -> Response:
    """The figures alone: htmx swaps them in every few seconds."""
    figures = await run_in_threadpool(measure, request.app.state.console)
    return render(request, "overview_figures.html", status=figures.asdict())


ROUTES = [Route("/", overview), Route("/overview/figures", overview_figures)]
