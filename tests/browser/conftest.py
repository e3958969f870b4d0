"""A real browser for the console's tests: Debian's Chromium (``apt-get install chromium``),
driven by Playwright for Python. No browser is ever downloaded: Playwright is pointed at the
installed executable. Without it the tests are skipped, unless ``REQUIRE_BROWSER`` is set (CI
sets it, after installing Chromium), which makes a missing browser a failure.

Each test gets a fresh profile, and its screenshots go to one folder per run, printed when the
first browser test starts (``CONSOLE_SCREENSHOTS`` chooses another one, e.g. ``var/shots``).
"""

import os
from pathlib import Path

import pytest
from django.db import connections

from tests.factories import UserFactory

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STAFF_PASSWORD = "correct horse battery staple"  # what UserFactory gives every user


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        message = f"no browser at {CHROMIUM}: apt-get install chromium (or set CHROMIUM)"
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session")
def screenshots(request, tmp_path_factory) -> Path:
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    # Printed past pytest's output capture, so that it shows when the tests pass too.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nconsole screenshots: {folder.resolve()}")
    return folder


@pytest.fixture
def page(chromium, live_server, tmp_path, monkeypatch):
    """A page of a fresh Chromium profile, 1400 px wide. It closes before the live server
    stops, so that the server is not left waiting on the browser's open connections."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM
    # calls between browser steps are synchronous all the same. With that loop running, Django
    # also keeps their database connections apart from the test's usual ones: they are closed
    # here, or dropping the test database would find them still open.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(15_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            connections.close_all()
            context.close()


@pytest.fixture
def operator(db):
    """A staff member who may see and retry transfers (a superuser, as on a first run)."""
    return UserFactory(username="operator", is_staff=True, is_superuser=True)


def log_in(page, live_server, user, *, then: str = "/admin/") -> None:
    page.goto(f"{live_server.url}{then}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def logged_in(page, live_server, operator):
    """The page, logged in as the operator, on the admin's first page."""
    log_in(page, live_server, operator)
    return page
