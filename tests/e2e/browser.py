"""The dashboard in a real browser: what its tests share (the fixtures are in conftest.py).

Chromium itself logs every failed request as a console error ("Failed to load
resource: … 401"), so a test that provokes one on purpose allows exactly that
message; anything else the page logs, and any uncaught exception, fails the test.
"""

from __future__ import annotations

import re

from .server import ADMIN_TOKEN

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the `browser` fixture, as a failure rather than a skip
    expect = sync_playwright = None

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000

# What Chromium logs for requests that fail on purpose in these tests.
HTTP_STATUS_LOGGED = r"Failed to load resource: the server responded with a status of {status}"
SERVER_AWAY_LOGGED = (
    r"net::ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|"
    r"Failed to load resource: net::ERR_(CONNECTION_REFUSED|EMPTY_RESPONSE|CONNECTION_RESET)"
)


class Console:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self):
        self.errors: list[str] = []
        self.exceptions: list[str] = []
        self._allowed: list[re.Pattern] = []

    def record(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} [{message.location.get('url', '')}]")

    def record_exception(self, error) -> None:
        self.exceptions.append(str(error))

    def allow(self, pattern: str) -> None:
        """Expect errors matching ``pattern`` (a failure this test provokes)."""
        self._allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        errors = [e for e in self.errors if not any(p.search(e) for p in self._allowed)]
        return self.exceptions + errors


def sign_in_as_admin(page, server) -> None:
    """The way the server's start-up message signs the admin in: a URL fragment."""
    page.goto(f"{server.url}/#admin_token={ADMIN_TOKEN}")
    expect(page.locator("#role-badge")).to_have_text("Admin")


def sign_in_with_form(page, server, secret: str) -> None:
    page.goto(server.url + "/")
    page.get_by_label("Admin token or API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def expect_live(page) -> None:
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "connected")


def toast(page, title: str):
    return page.locator(".toast").filter(has=page.locator(".toast-title", has_text=title))
