"""Browser tests of the web console: Playwright (Python) driving Debian's Chromium, headless,
against a real relay and the fake upstream on 127.0.0.1.

Without Playwright or a Chromium binary the tests skip with the reason; CI
(AIPROXY_TEST_REQUIRE_SERVICES=1) makes them fail instead. Every page a test visits is
screenshotted into AIPROXY_TEST_SCREENSHOTS (default: test-screenshots/ in the repository).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import running_relay
from ..support import ADMIN_PASSWORD, Api, mock_upstream_process, services_required, unavailable

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("AIPROXY_TEST_SCREENSHOTS", ROOT / "test-screenshots"))
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
DESKTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
EXPECTED_REFUSAL = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")


def chromium_path() -> str | None:
    configured = os.environ.get("AIPROXY_TEST_CHROMIUM")
    if configured:
        return configured
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not for the whole session: Playwright's synchronous API keeps an
    event loop running in this thread while it is open, and the next module on this worker may
    need asyncio.run()."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the Python package playwright is not installed (make test installs it)")
    executable = chromium_path()
    if executable is None:
        unavailable("no Chromium found: install Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as playwright:
        playwright.selectors.set_test_id_attribute("data-test")
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def console_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A relay on SQLite with the fake upstream beside it (the console does not depend on the backend)."""
    with (
        mock_upstream_process() as mock,
        running_relay("sqlite", tmp_path_factory.mktemp("console")) as relay,
    ):
        relay.mock_url = str(mock.base_url).rstrip("/")  # type: ignore[attr-defined]
        yield relay


@pytest.fixture
def admin_api(console_relay: Any) -> Iterator[Api]:
    api = Api(console_relay.base_url)
    api.login("admin", ADMIN_PASSWORD)
    yield api
    api.close()


class ConsolePage:
    """One browser tab on the console that collects console errors and uncaught exceptions, and
    writes screenshots. The test fails if the page logged any error."""

    def __init__(self, page: Any, base_url: str, name: str) -> None:
        self.page = page
        self.base_url = base_url
        self.name = name
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        # The browser logs every 4xx answer; an API refusal the page then shows (a wrong password,
        # a bad field) is an expected outcome, not a page error. 5xx and everything else count.
        url = (message.location or {}).get("url", "")
        if "/api/" in url and EXPECTED_REFUSAL.match(message.text):
            return
        self.errors.append(f"console error: {message.text} ({url})")

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path)
        self.page.wait_for_load_state("networkidle")

    def login(self, username: str, password: str) -> None:
        self.goto("/login")
        self.page.get_by_test_id("login-username").fill(username)
        self.page.get_by_test_id("login-password").fill(password)
        self.page.get_by_test_id("login-submit").click()
        self.page.wait_for_url(re.compile(r"^(?!.*/login).*$"))
        self.page.wait_for_load_state("networkidle")

    def settled(self) -> None:
        """Wait until no loading mask shows and no transition runs (for a screenshot of a finished
        page); endless animations (spinners) do not count."""
        self.page.locator(".el-loading-mask:visible").first.wait_for(state="detached")
        self.page.wait_for_function(
            "() => document.getAnimations().every(a => a.playState !== 'running'"
            " || a.effect.getTiming().iterations === Infinity)"
        )

    def shot(self, label: str) -> Path:
        """A screenshot of the whole page: the shell scrolls inside its main area, so the window is
        made as tall as that area for the shot (full_page alone would stop at the window's height)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{label}.png"
        size = self.page.viewport_size
        height = self.page.evaluate(
            "Math.max(document.querySelector('.el-main')?.scrollHeight || 0, innerHeight)"
        )
        self.page.set_viewport_size({"width": size["width"], "height": height + 60})
        try:
            self.page.screenshot(path=str(path), full_page=True)
        finally:
            self.page.set_viewport_size(size)
        return path


@pytest.fixture
def console(browser: Any, console_relay: Any, request: pytest.FixtureRequest) -> Iterator[ConsolePage]:
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    context.set_default_timeout(15_000)
    page = ConsolePage(context.new_page(), console_relay.base_url, request.node.name)
    try:
        yield page
    finally:
        context.close()
    assert not page.errors, "\n".join(page.errors)


def field_error(page: Any, test_id: str) -> Any:
    """The error line of the form item holding the input `test_id`."""
    return page.locator(".el-form-item", has=page.get_by_test_id(test_id)).locator(".el-form-item__error")


def pick(page: Any, select_test_id: str, option: str) -> None:
    """Choose `option` in the Element Plus select carrying `select_test_id`."""
    page.get_by_test_id(select_test_id).click()
    page.get_by_role("option", name=option, exact=True).click()


def relay_reachable(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


__all__ = ["DESKTOP", "PHONE", "ConsolePage", "field_error", "pick", "relay_reachable", "services_required"]
