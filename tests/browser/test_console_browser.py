"""The ops console in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

An operator finds a dead letter by its group, opens it and replays it; edits a bad payload
and retries it; opens a stuck saga's timeline. Without signing in nothing is shown, and a
payload carrying a script is shown as text. The screenshots in docs/ are taken here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from pymongo.database import Database
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from messages import encode
from messages.errors import PermanentError
from messages.inventory import AddStock
from readstore.db import Document
from readstore.orders import OrderSummaries
from sagas.fulfilment import start
from sagas.store import SagaStore
from tests.console import TOKEN, make_console, served
from tests.support import order_placed, place_order, register_customer, settle
from tests.unit.test_deadletters import send_raw
from workers.contexts.orders import Order
from workers.deadletters.store import DeadLetterStore
from workers.publishing import publish
from workers.runtime.settings import Settings
from workers.subscribers import fulfilment

DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]


def browser_binaries() -> tuple[str, str]:
    """Chromium and its driver; missing, the test fails in CI and is skipped elsewhere."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        message = (
            "the browser tests need Debian's chromium and chromium-driver (make test installs them)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


@pytest.fixture(scope="module")
def chrome() -> Iterator[WebDriver]:
    chromium, driver_path = browser_binaries()
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.implicitly_wait(2)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The fulfilment saga on, so a replayed order goes on to be confirmed."""
    return settings.model_copy(update={"fulfilment_saga": True})


@pytest.fixture
def console_url(
    settings: Settings, database: Database[Document], stub_broker: StubBroker
) -> Iterator[str]:
    fulfilment.configure(settings)
    with served(make_console(settings, database, stub_broker)) as url:
        yield url


def sign_in(chrome: WebDriver, url: str, name: str = "alice") -> None:
    chrome.delete_all_cookies()
    chrome.get(f"{url}/login")
    chrome.find_element(By.ID, "operator").send_keys(name)
    chrome.find_element(By.ID, "token").send_keys(TOKEN)
    chrome.find_element(By.ID, "sign-in").click()
    # The login page's heading may be read as the overview replaces it (a stale element).
    wait = WebDriverWait(chrome, 10, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda driver: driver.find_element(By.TAG_NAME, "h1").text == "Overview")


def open_group_with(chrome: WebDriver, url: str, reason: str) -> None:
    """From the dead-letter page, the group whose reason mentions ``reason``."""
    chrome.get(f"{url}/dead-letters")
    rows = chrome.find_elements(By.CSS_SELECTOR, "tr.group")
    [row] = [r for r in rows if reason in r.find_element(By.CSS_SELECTOR, ".reason").text]
    row.find_element(By.CSS_SELECTOR, "a.group-link").click()


def listed_ids(chrome: WebDriver) -> list[str]:
    return [
        r.get_attribute("data-id") or ""
        for r in chrome.find_elements(By.CSS_SELECTOR, "tr.message")
    ]


def customer_with_stock(broker: StubBroker, worker: Worker) -> Any:
    customer = register_customer()
    publish(customer)
    publish(AddStock(sku="SKU-1", quantity=10))
    settle(broker, worker)
    return customer


def order_status(database: Database[Document], order_id: Any) -> str | None:
    doc = database[OrderSummaries.collection_name].find_one({"_id": str(order_id)})
    return None if doc is None else str(doc["status"])


def test_operator_replays_a_dead_letter_found_by_its_group_and_the_order_confirms(
    chrome: WebDriver,
    console_url: str,
    stub_broker: StubBroker,
    stub_worker: Worker,
    database: Database[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an order dead-lettered while the order service was broken
    customer = customer_with_stock(stub_broker, stub_worker)

    def broken(self: Order, command: Any, who: Any) -> None:
        raise PermanentError("order book unavailable")

    monkeypatch.setattr(Order, "place", broken)
    order = place_order(customer.customer_id)
    publish(order)
    settle(stub_broker, stub_worker)
    monkeypatch.undo()
    # When the operator finds its group, opens the message and replays it
    sign_in(chrome, console_url)
    chrome.save_screenshot(str(DOCS / "console-overview.png"))
    open_group_with(chrome, console_url, "order book unavailable")
    chrome.save_screenshot(str(DOCS / "console-dead-letter-group.png"))
    [entry_id] = listed_ids(chrome)
    chrome.find_element(By.CSS_SELECTOR, f'tr[data-id="{entry_id}"] a.message-link').click()
    assert "order book unavailable" in chrome.find_element(By.ID, "traceback").text
    chrome.find_element(By.ID, "replay").click()
    assert chrome.find_element(By.ID, "confirm-count").text == "1"
    chrome.find_element(By.ID, "confirm").click()
    # Then it is replayed by the operator, it leaves the group's list, and the order confirms
    assert chrome.find_element(By.ID, "done").text == "replayed 1"
    # (replayed, then resolved once the worker processed it: whichever the page caught)
    assert chrome.find_element(By.ID, "field-state").text in ("replayed", "resolved")
    assert "alice (console)" in chrome.find_element(By.ID, "history").text
    chrome.find_element(By.LINK_TEXT, DeadLetterStore().get(entry_id)["group"]).click()  # type: ignore[index]
    assert entry_id not in listed_ids(chrome)
    settle(stub_broker, stub_worker)
    assert order_status(database, order.order_id) == "confirmed"
    chrome.get(f"{console_url}/sagas/{order.order_id}")
    assert chrome.find_element(By.ID, "saga-state").text == "completed"


def test_operator_edits_a_bad_payload_which_is_validated_then_retried(
    chrome: WebDriver,
    console_url: str,
    stub_broker: StubBroker,
    stub_worker: Worker,
    database: Database[Document],
) -> None:
    # Given an order whose payload breaks its schema (a quantity that is not a number)
    customer = customer_with_stock(stub_broker, stub_worker)
    order = place_order(customer.customer_id)
    wire = encode(order)
    wire["data"]["lines"][0]["quantity"] = "two"
    entry_id = send_raw(stub_broker, "orders.commands", "handle_order_command", wire)
    settle(stub_broker, stub_worker)
    sign_in(chrome, console_url)
    chrome.get(f"{console_url}/dead-letters/messages/{entry_id}")
    editor = chrome.find_element(By.ID, "edit-message")
    # When the operator retries it unchanged
    chrome.find_element(By.ID, "edit-retry").click()
    # Then the schema's complaint is shown and nothing is sent
    assert "quantity" in chrome.find_element(By.ID, "problem").text
    assert DeadLetterStore().get(entry_id)["state"] == "dead"  # type: ignore[index]
    # When the payload is corrected and retried
    editor = chrome.find_element(By.ID, "edit-message")
    fixed = editor.get_attribute("value").replace('"two"', "2")  # type: ignore[union-attr]
    chrome.execute_script("arguments[0].value = arguments[1];", editor, fixed)
    chrome.find_element(By.ID, "edit-retry").click()
    # Then the edit and the replay are in the history with who did them, and the order confirms
    assert chrome.find_element(By.ID, "done").text == "edited and replayed 1"
    history = DeadLetterStore().get(entry_id)["history"]  # type: ignore[index]
    events = [h["event"] for h in history]
    assert events[events.index("edited") :][:2] == ["edited", "replayed"]
    edited = history[events.index("edited")]
    assert edited["by"] == "alice (console)"
    assert edited["before"]["data"]["lines"][0]["quantity"] == "two"
    assert edited["after"]["data"]["lines"][0]["quantity"] == 2
    settle(stub_broker, stub_worker)
    assert order_status(database, order.order_id) == "confirmed"


def test_operator_opens_a_stuck_sagas_timeline(
    chrome: WebDriver, console_url: str, database: Database[Document]
) -> None:
    # Given a saga stuck waiting for its stock, long past its step deadline
    order = place_order(register_customer().customer_id)
    placed = order_placed(order)
    state, out = start(placed, step_seconds=30, now=datetime.now(UTC))
    SagaStore(database).create(state, placed, out)
    overdue = datetime.now(UTC) - timedelta(minutes=30)
    database.sagas.update_one({"_id": str(order.order_id)}, {"$set": {"deadline": overdue}})
    # When the operator opens the sagas page and the stuck one
    sign_in(chrome, console_url)
    chrome.get(f"{console_url}/sagas")
    stuck = chrome.find_element(By.ID, "stuck")
    stuck.find_element(By.CSS_SELECTOR, f'tr[data-id="{order.order_id}"] a.saga-link').click()
    # Then its timeline shows what caused each step, and the command it still owes
    timeline = chrome.find_element(By.ID, "timeline").text
    assert "(start) → reserving" in timeline
    assert "OrderPlaced" in timeline
    assert "ReserveStock" in chrome.find_element(By.ID, "pending").text
    chrome.save_screenshot(str(DOCS / "console-saga-timeline.png"))


def test_a_page_without_the_token_is_refused(chrome: WebDriver, console_url: str) -> None:
    # Given a browser that never signed in
    chrome.delete_all_cookies()
    # When it opens the dead letters
    chrome.get(f"{console_url}/dead-letters")
    # Then it is refused and shown the way to sign in, nothing else
    assert "401" in chrome.find_element(By.TAG_NAME, "h1").text
    assert chrome.find_elements(By.ID, "groups") == []


def test_a_payload_with_a_script_is_shown_as_text(
    chrome: WebDriver, console_url: str, stub_broker: StubBroker, stub_worker: Worker
) -> None:
    # Given a dead letter whose payload carries a script
    script = "<script>document.title='owned';alert(1)</script>"
    wire = encode(register_customer())
    wire["type"] = script
    entry_id = send_raw(stub_broker, "customers.commands", "handle_customer_command", wire)
    settle(stub_broker, stub_worker)
    # When the operator opens it
    sign_in(chrome, console_url)
    chrome.get(f"{console_url}/dead-letters/messages/{entry_id}")
    # Then the script is there as text, and it never ran
    assert script in chrome.find_element(By.ID, "envelope").text
    assert chrome.title != "owned"
    with pytest.raises(NoAlertPresentException):
        chrome.switch_to.alert.text  # noqa: B018 -- reading it is the check
    assert len(chrome.find_elements(By.TAG_NAME, "script")) == 1  # htmx, nothing else
