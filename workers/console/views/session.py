"""Signing in (operator name and token) and out; the session is a signed cookie."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from workers.console import auth
from workers.console.pages import Console, redirect

FORM = """<!doctype html><html><head><title>sagaworks console: sign in</title>
<link rel="stylesheet" href="/static/console.css"></head><body class="login">
<h1>sagaworks console</h1>{problem}
<form method="post" action="/login">
<label>Your name <input name="operator" id="operator" required maxlength="40"></label>
<label>Operator token <input name="token" id="token" type="password" required></label>
<button type="submit" id="sign-in">Sign in</button></form></body></html>"""


async def login_form(request: Request) -> Response:
    return HTMLResponse(FORM.format(problem=""))


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    form = await request.form()
    name, token = str(form.get("operator") or "").strip(), str(form.get("token") or "")
    if not auth.valid_name(name) or not console.credentials.token_ok(token):
        problem = '<p class="error">Wrong token, or a name with odd characters.</p>'
        return HTMLResponse(FORM.format(problem=problem), status_code=401)
    response = redirect("/")
    cookie = auth.session_cookie(console.credentials, name)
    response.set_cookie(auth.COOKIE, cookie, httponly=True, samesite="strict")
    return response


async def logout(request: Request) -> Response:
    response = redirect("/login")
    response.delete_cookie(auth.COOKIE)
    return response


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
