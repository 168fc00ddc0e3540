"""The ops console: a small ASGI app over the functions the CLI uses; pages rendered on the server.

``create_app(console)`` assembles it: a gate that admits only a signed-in operator (and
checks CSRF on every POST), the pages per area (overview, dead letters, sagas,
projections), ``/metrics``, sign-in, and the vendored htmx. Templates escape everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from workers.console import auth, filters
from workers.console.pages import Console, posted, redirect, render
from workers.console.views import deadletters, metrics, overview, projections, sagas, session

HERE = Path(__file__).parent
#: Paths served without an operator: sign-in and the static files (htmx).
OPEN_PATHS = ("/login", "/static/")


def templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped: a payload's <script> renders as text
    )
    filters.install(environment)
    return Jinja2Templates(env=environment)


class Gate(BaseHTTPMiddleware):
    """Refuses a request from no operator, and a POST without the operator's CSRF token."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        console: Console = request.app.state.console
        if request.url.path.startswith(OPEN_PATHS):
            return await call_next(request)
        operator = auth.operator_of(request, console.credentials)
        if operator is None:
            return refused(console)
        request.state.operator = operator
        if request.method == "POST":
            form = await request.form()
            request.state.form = form  # the body is read once: views take the form from here
            if not auth.csrf_ok(console.credentials, operator, str(form.get("csrf") or "")):
                return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        return await call_next(request)


def refused(console: Console) -> Response:
    body = (
        "<!doctype html><title>Sign in</title><h1>401: sign in first</h1>"
        '<p><a href="/login">Sign in with the operator token</a></p>'
    )
    headers = {"WWW-Authenticate": 'Basic realm="sagaworks"'} if console.credentials.user else {}
    return HTMLResponse(body, status_code=401, headers=headers)


def routes() -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for module in (session, overview, deadletters, sagas, projections, metrics):
        found += module.ROUTES
    found.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    return found


def create_app(console: Console) -> Starlette:
    app = Starlette(routes=routes(), middleware=[Middleware(Gate)])
    app.state.console = console
    app.state.templates = templates()
    return app


__all__ = ["Console", "Route", "create_app", "posted", "redirect", "render"]
