"""Real servers, and the services end-to-end tests need: Redis, Debian's Chromium and a page in it.

Throwaway databases (``fresh_database``, ``postgres_database``) come from tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import require

from .browser import CHROMIUM_ARGS, TIMEOUT_MS, Console, expect, sync_playwright
from .server import LiveServer

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def _install_chromium(config) -> str | None:
    """apt-get install Debian's chromium (as root); None once it is there, else why not."""
    if CHROMIUM.exists():
        return None
    if "CHROMIUM_PATH" in os.environ:
        return f"CHROMIUM_PATH={CHROMIUM} does not exist"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{CHROMIUM} is missing; install it with `apt-get install -y chromium` as root"
    # Playwright's own browser download is blocked here: Debian's package is the browser.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"{CHROMIUM} is missing: apt-get install chromium (once)", bold=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        ["apt-get", *lock, "update", "-qq"],
        ["apt-get", *lock, "install", "-y", "-qq", "chromium"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed:\n{done.stdout}{done.stderr}"
    return None if CHROMIUM.exists() else f"chromium installed, but {CHROMIUM} is missing"


@pytest.fixture(scope="session")
def chromium(pytestconfig) -> Path:
    """Debian's Chromium, installed on first use where the suite runs as root."""
    require("Chromium", _install_chromium(pytestconfig))
    return CHROMIUM


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """redis-server, for tests that start (and stop) a Redis of their own."""
    found = shutil.which("redis-server")
    require("redis-server", None if found else "not installed (apt-get install redis-server)")
    return found


@pytest.fixture
def live_server_factory(fresh_database):
    """Start real servers; every one is stopped after the test."""
    servers: list[LiveServer] = []

    def start(mode: str = "eventlet", database_url: str | None = None, **env) -> LiveServer:
        server = LiveServer(database_url or fresh_database(), mode=mode, **env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["eventlet", "eventlet-public-paths", "threading"])
def live_server(request, live_server_factory) -> LiveServer:
    """Each server mode; "eventlet-public-paths" takes the paths a failed probe of library
    internals would (EVENTLET_PUBLIC_PATHS_ONLY: fan-out through engineio's queue)."""
    if request.param == "eventlet-public-paths":
        server = live_server_factory(mode="eventlet", EVENTLET_PUBLIC_PATHS_ONLY="1")
        assert "fan-out: every frame through python-engineio's queue" in server.log()
        return server
    return live_server_factory(mode=request.param)


# --- the dashboard in a browser (tests/e2e/browser.py) ----------------------------------


@pytest.fixture(scope="module")
def browser(chromium):
    if sync_playwright is None:
        pytest.fail("Playwright is not installed: `pip install -e '.[dev]'`.", pytrace=False)
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def console():
    return Console()


@pytest.fixture
def page(browser, console, live_server_factory):
    # Depends on the server factory so that it closes before any server stops: a page
    # left open would log the lost connection.
    context = browser.new_context(
        viewport={"width": 1440, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", console.record)
    page.on("pageerror", console.record_exception)
    yield page
    context.close()
    assert console.unexpected() == [], "the page logged errors"
