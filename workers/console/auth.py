"""Who may use the console: an operator token or basic auth, a signed session, CSRF tokens.

Every page needs an operator: a ``Bearer`` token, basic auth, or the session cookie the
sign-in form sets (the operator's name, signed with a key derived from the secret). Every
action is a POST carrying a CSRF token derived from the same key and the operator's name,
so another site cannot make an operator's browser act.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from starlette.requests import Request

from workers.runtime.settings import Settings

COOKIE = "sagaworks_console"
_NAME = re.compile(r"^[\w .@-]{1,40}$")


@dataclass(frozen=True)
class Credentials:
    """The secrets that admit an operator; ``key`` signs sessions and CSRF tokens."""

    token: str | None
    user: str | None
    password: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """From settings; with no token and no password, a one-off token (to be printed)."""
        token = settings.console_token.get_secret_value() if settings.console_token else None
        password = (
            settings.console_password.get_secret_value() if settings.console_password else None
        )
        if not token and not (settings.console_user and password):
            token = secrets.token_urlsafe(24)
        return cls(token, settings.console_user, password)

    @property
    def key(self) -> bytes:
        secret = f"{self.token or ''}\0{self.user or ''}\0{self.password or ''}"
        return hashlib.sha256(b"sagaworks-console\0" + secret.encode()).digest()

    def sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, candidate: str) -> bool:
        expected = (self.token or "").encode()
        return bool(self.token) and hmac.compare_digest(candidate.encode(), expected)

    def basic_ok(self, user: str, password: str) -> bool:
        if not (self.user and self.password):
            return False
        same_user = hmac.compare_digest(user.encode(), self.user.encode())
        return same_user and hmac.compare_digest(password.encode(), self.password.encode())


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def session_cookie(credentials: Credentials, operator: str) -> str:
    return f"{operator}|{credentials.sign('session|' + operator)}"


def csrf_token(credentials: Credentials, operator: str) -> str:
    return credentials.sign("csrf|" + operator)


def csrf_ok(credentials: Credentials, operator: str, candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), csrf_token(credentials, operator).encode())


def operator_of(request: Request, credentials: Credentials) -> str | None:
    """The operator a request comes from, or ``None`` when it proves no one."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.token_ok(value.strip()):
        return "token"
    if scheme.lower() == "basic":
        return _basic(value.strip(), credentials)
    return _session(request.cookies.get(COOKIE, ""), credentials)


def _basic(value: str, credentials: Credentials) -> str | None:
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user if credentials.basic_ok(user, password) else None


def _session(cookie: str, credentials: Credentials) -> str | None:
    name, _, signature = cookie.rpartition("|")
    if not name or not valid_name(name):
        return None
    expected = credentials.sign("session|" + name)
    return name if hmac.compare_digest(signature.encode(), expected.encode()) else None
