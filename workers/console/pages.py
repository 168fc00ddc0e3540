"""What every console page shares: the console's state, rendering, forms and redirects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dramatiq
from pymongo.database import Database
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from readstore.db import Document
from workers.console import auth
from workers.runtime.settings import Settings


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


def posted(request: Request) -> FormData:
    """The form of a POST the gate admitted (it read the body to check the CSRF token)."""
    form: FormData = request.state.form
    return form


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)
