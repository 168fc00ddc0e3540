"""``/metrics``: Dramatiq's own Prometheus metrics and the ``status`` figures, in one scrape."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from workers.console.pages import Console
from workers.console.views.overview import measure
from workers.ops.metrics import CONTENT_TYPE, exposition


async def metrics(request: Request) -> Response:
    console: Console = request.app.state.console
    body = await run_in_threadpool(exposition, lambda: measure(console), console.broker)
    return Response(body, media_type=CONTENT_TYPE)


ROUTES = [Route("/metrics", metrics)]
