"""``redact_url``: credentials never survive into logs or CLI output, whatever the URL's shape."""

from __future__ import annotations

import pytest

from readstore.db import redact_url


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("amqp://guest:s3cret@127.0.0.1:5672/", "s3cret"),
        ("amqp://user:p@ss@host:5672/vhost", "p@ss"),
        ("amqp://user:p@ss@word@host/", "p@ss@word"),
        ("mongodb://app:pa:ss@h1:27017,h2:27017/?replicaSet=rs0", "pa:ss"),
        ("mongodb://app:pa%40ss@host/db?authSource=admin", "pa%40ss"),
        ("mongodb://host/?password=hunter2&w=1", "hunter2"),
        ("amqp://host/?token=abc123def", "abc123def"),
        ("https://host/path?api_key=KEY-9&x=1", "KEY-9"),
        ("https://host/?X-Amz-Signature=deadbeef", "deadbeef"),
        ("mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:tok42", "tok42"),
        ("amqp://host/;secret=xyz789", "xyz789"),
        ("amqp://only-user-token@host/", "only-user-token"),
        ("amqp://user:pw@[::1:5672/", "pw"),
        ("user:pw0rd@host", "pw0rd"),
    ],
)
def test_redacted_url_contains_no_secret(url: str, secret: str) -> None:
    # Given a URL carrying a secret in an awkward place
    # When it is redacted
    shown = redact_url(url)
    # Then no part of the secret is left, and something is still shown
    assert secret not in shown
    assert secret[1:] not in shown
    assert secret[:-1] not in shown
    assert shown


def test_redaction_keeps_what_is_not_secret() -> None:
    # Given a URL with a password and harmless options
    url = "mongodb://app:pw@h1:27017,h2:27018/orders?replicaSet=rs0&authSource=admin"
    # When it is redacted
    shown = redact_url(url)
    # Then hosts, database and harmless options stay readable
    assert shown == "mongodb://app:***@h1:27017,h2:27018/orders?replicaSet=rs0&authSource=admin"


def test_url_without_credentials_is_unchanged() -> None:
    assert redact_url("amqp://127.0.0.1:5672/") == "amqp://127.0.0.1:5672/"
    assert redact_url("") == ""
