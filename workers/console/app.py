"""The ops console: a small ASGI app over the functions the CLI uses; pages rendered on the server.

``create_app(console)`` assembles it: a gate that admits only a signed-in operator (and
checks CSRF on every POST), the pages per area (overview, dead letters, sagas,
projections), ``/metrics``, sign-in, and the vendored htmx. Templates escape everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import jinja2
from pymongo.database import Database
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from readstore.db import Document
from workers.console import auth, filters
from workers.runtime.settings import Settings

HERE = Path(__file__).parent
#: Paths served without an operator: sign-in and the static files (htmx).
OPEN_PATHS = ("/login", "/static/")


@dataclass
class Console:
    """What the console works on: the settings, the database, the broker replays go to."""

    settings: Settings
    database: Database[Document]
    broker: dramatiq.Broker
    credentials: auth.Credentials
    rebuilds: dict[str, Any] = field(default_factory=dict)

    @property
    def read_only(self) -> bool:
        return self.settings.console_read_only


def templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped: a payload's <script> renders as text
    )
    filters.install(environment)
    return Jinja2Templates(env=environment)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """A page, with the operator, their CSRF token and the read-only flag available to it."""
    console: Console = request.app.state.console
    operator = request.state.operator
    base = {
        "operator": operator,
        "csrf": auth.csrf_token(console.credentials, operator),
        "read_only": console.read_only,
    }
    page: Jinja2Templates = request.app.state.templates
    return page.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


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
    from workers.console.views import (  # noqa: PLC0415 -- the views import this module
        deadletters,
        metrics,
        overview,
        projections,
        sagas,
        session,
    )

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


def posted(request: Request) -> FormData:
    """The form of a POST the gate admitted (it read the body to check the CSRF token)."""
    form: FormData = request.state.form
    return form


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


__all__ = ["Console", "Route", "create_app", "posted", "redirect", "render"]
