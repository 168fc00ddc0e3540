"""The ops console over HTTP: refused without an operator, CSRF on actions, escaping, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database
from starlette.testclient import TestClient

from messages import encode
from readstore.db import Document
from tests.console import TOKEN, make_console
from tests.support import register_customer, settle
from tests.unit.test_deadletters import send_raw
from workers.console.app import create_app
from workers.console.auth import csrf_token
from workers.deadletters.store import DeadLetterStore
from workers.publishing import publish
from workers.runtime.settings import Settings

SCRIPT = "<script>alert('owned')</script>"


def client_for(app: Any) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


@pytest.fixture
def console_client(
    settings: Settings, database: Database[Document], stub_broker: StubBroker
) -> Iterator[TestClient]:
    with client_for(create_app(make_console(settings, database, stub_broker))) as client:
        yield client


def signed_in(client: TestClient, name: str = "alice") -> str:
    response = client.post("/login", data={"operator": name, "token": TOKEN})
    assert response.status_code == 303
    return csrf_token(client.app.state.console.credentials, name)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path", ["/", "/dead-letters", "/sagas", "/projections", "/metrics", "/overview/figures"]
)
def test_every_page_refuses_a_request_without_the_token(
    console_client: TestClient, path: str
) -> None:
    # Given no sign-in, When a page is asked for, Then it is refused
    response = console_client.get(path)
    assert response.status_code == 401
    assert "sign in" in response.text


def test_a_wrong_token_or_forged_session_is_refused(console_client: TestClient) -> None:
    # Given a wrong token and a hand-made session cookie
    wrong = console_client.post("/login", data={"operator": "eve", "token": "guess"})
    console_client.cookies.set("sagaworks_console", "eve|0000")
    # When a page is asked for with the forged cookie, Then both are refused
    assert wrong.status_code == 401
    assert console_client.get("/").status_code == 401


def test_a_bearer_token_opens_the_pages(console_client: TestClient) -> None:
    # Given the operator token as a bearer token, When a page is asked for, Then it is served
    response = console_client.get("/sagas", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "Stuck" in response.text


def test_an_action_without_the_csrf_token_is_refused(
    console_client: TestClient, stub_worker: Worker, stub_broker: StubBroker
) -> None:
    # Given a signed-in operator and a dead letter
    entry = send_raw(stub_broker, "orders.commands", "handle_order_command", "not json")
    settle(stub_broker, stub_worker)
    csrf = signed_in(console_client)
    # When it is archived without the CSRF token, then with it
    form = {"action": "archive", "id": entry}
    refused = console_client.post("/dead-letters/act", data=form)
    accepted = console_client.post("/dead-letters/act", data={**form, "csrf": csrf})
    # Then only the second is done, and it is in the history with who did it
    assert refused.status_code == 403
    assert accepted.status_code == 303
    doc = DeadLetterStore().get(entry)
    assert doc is not None
    assert doc["state"] == "archived"
    assert doc["history"][-1]["by"] == "alice (console)"


def test_read_only_mode_refuses_actions(
    settings: Settings, database: Database[Document], stub_broker: StubBroker, stub_worker: Worker
) -> None:
    # Given a read-only console and a dead letter
    entry = send_raw(stub_broker, "orders.commands", "handle_order_command", "not json")
    settle(stub_broker, stub_worker)
    console = make_console(settings, database, stub_broker, console_read_only=True)
    with client_for(create_app(console)) as client:
        csrf = signed_in(client)
        # When it is replayed
        response = client.post(
            "/dead-letters/act", data={"action": "replay", "id": entry, "csrf": csrf}
        )
        page = client.get(f"/dead-letters/messages/{entry}")
    # Then it is refused, the page offers no action, and the entry is untouched
    assert response.status_code == 403
    assert 'id="replay"' not in page.text
    assert DeadLetterStore().get(entry)["state"] == "dead"  # type: ignore[index]


def test_a_script_in_a_payload_is_shown_as_text(
    console_client: TestClient, stub_broker: StubBroker, stub_worker: Worker
) -> None:
    # Given a dead letter whose payload and reason carry a script
    wire = encode(register_customer())
    wire["type"] = SCRIPT
    entry = send_raw(stub_broker, "customers.commands", "handle_customer_command", wire)
    settle(stub_broker, stub_worker)
    signed_in(console_client)
    # When its page and its group's page are shown
    doc = DeadLetterStore().get(entry)
    assert doc is not None
    pages = [console_client.get(f"/dead-letters/messages/{entry}").text]
    pages.append(console_client.get(f"/dead-letters/groups/{doc['group']}").text)
    # Then the script is escaped, never markup
    for page in pages:
        assert SCRIPT not in page
        assert "&lt;script&gt;" in page


def test_no_credential_appears_on_any_page(console_client: TestClient, settings: Settings) -> None:
    # Given a signed-in operator
    signed_in(console_client)
    # When every page is read
    pages = [console_client.get(p).text for p in ("/", "/dead-letters", "/sagas", "/projections")]
    # Then neither the operator token nor the broker's password is shown
    for page in pages:
        assert TOKEN not in page
        assert "guest:guest" not in page


def test_metrics_has_dramatiqs_and_ours_on_one_page(
    console_client: TestClient, stub_broker: StubBroker, stub_worker: Worker
) -> None:
    # Given a message processed by the in-process worker
    publish(register_customer())
    settle(stub_broker, stub_worker)
    # When /metrics is scraped with the token
    response = console_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    # Then Dramatiq's per-actor counters and our figures are both there
    assert response.status_code == 200
    assert 'dramatiq_messages_total{actor_name="handle_customer_command"' in response.text
    assert "sagaworks_queue_dead_letters" in response.text
    assert "sagaworks_healthy" in response.text


def test_basic_auth_from_settings_admits_its_user_only(
    settings: Settings, database: Database[Document], stub_broker: StubBroker
) -> None:
    # Given a console configured for basic auth
    from pydantic import SecretStr

    basic = settings.model_copy(
        update={"console_user": "ops", "console_password": SecretStr("s3cret")}
    )
    console = make_console(basic, database, stub_broker)
    with client_for(create_app(console)) as client:
        # When pages are asked for with the right and a wrong password
        right = client.get("/dead-letters", auth=("ops", "s3cret"))
        wrong = client.get("/dead-letters", auth=("ops", "guess"))
    # Then only the right one is served, and the refusal asks the browser for basic auth
    assert right.status_code == 200
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Basic")
