"""The dashboard in a real browser: Playwright drives Debian's Chromium against a live server.

The browser, the page and its console come from conftest.py; helpers from browser.py.
"""

from __future__ import annotations

import html.parser
import json
import math
import os
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from .browser import (
    HTTP_STATUS_LOGGED,
    SERVER_AWAY_LOGGED,
    expect,
    expect_live,
    sign_in_as_admin,
    sign_in_with_form,
    toast,
)
from .server import ADMIN_TOKEN, ROOT

pytestmark = pytest.mark.e2e

WEB = ROOT / "web"
# The README's screenshot is rewritten only on request (`make screenshot`), so an ordinary
# test run leaves the work tree clean; otherwise it goes to a temporary folder.
SCREENSHOT = (
    ROOT / "docs" / "dashboard.png"
    if os.environ.get("UPDATE_SCREENSHOT") == "1"
    else Path(tempfile.gettempdir()) / "ingest-dashboard.png"
)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def server(live_server_factory):
    return live_server_factory(mode="eventlet")


# --- helpers ------------------------------------------------------------------------------


def rows(page):
    return page.locator("#feed-list > li")


def row_types(page) -> list[str]:
    return page.locator("#feed-list .event-type").all_text_contents()


def events(*types: str, **metadata) -> list[dict]:
    return [{"type": t, "metadata": dict(metadata)} for t in types]


# --- the page itself ----------------------------------------------------------------------


class _InlineCodeFinder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            names = dict(attrs)
            if "src" not in names:
                self.problems.append("<script> without src")
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append("<script> with a body")


def test_page_has_no_inline_code_and_never_writes_html_from_data():
    finder = _InlineCodeFinder()
    finder.feed((WEB / "index.html").read_text())
    assert finder.problems == []
    writes_html = re.compile(r"\.(inner|outer)HTML\s*\+?=|insertAdjacentHTML\(|document\.write")
    for module in WEB.glob("*.js"):
        assert not writes_html.search(module.read_text()), module.name
    assert (WEB / "vendor" / "socket.io.min.js").exists()


# --- signing in ---------------------------------------------------------------------------


def test_admin_link_signs_in_and_leaves_no_token_in_the_address_bar(page, server):
    server.create_tenant("acme")
    globex = server.create_tenant("globex")
    server.post_events(globex["api_key"], events("globex.only"))
    sign_in_as_admin(page, server)
    assert page.url == server.url + "/"
    assert page.evaluate("sessionStorage.getItem('ingest.secret')") == ADMIN_TOKEN
    selected = page.locator(".tenant-item[aria-pressed=true] .tenant-name")
    expect(selected).to_have_text("acme")
    expect_live(page)
    expect(page.locator("#feed-state")).to_contain_text("No events yet")

    page.get_by_role("button", name="globex").click()
    expect(selected).to_have_text("globex")
    expect(rows(page)).to_have_count(1)
    assert row_types(page) == ["globex.only"]

    page.reload()  # the session, and the tenant on screen, survive a reload of the tab
    expect(page.locator("#role-badge")).to_have_text("Admin")
    expect(selected).to_have_text("globex")
    expect_live(page)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    expect(page.locator("#connection-status")).to_be_hidden()

    # The link pasted into this open tab changes only the fragment: still signs in.
    page.goto(f"{server.url}/#admin_token={ADMIN_TOKEN}")
    expect(page.locator("#role-badge")).to_have_text("Admin")
    assert page.url == server.url + "/"


def test_tenant_key_signs_in_to_its_own_events_only(page, server, console):
    acme = server.create_tenant("acme")
    globex = server.create_tenant("globex")
    server.post_events(globex["api_key"], events("secret.thing"))

    console.allow(HTTP_STATUS_LOGGED.format(status=401))
    sign_in_with_form(page, server, "ik_not-a-real-key")
    expect(page.locator("#signin-error")).to_have_text("That token or key was not accepted.")
    expect(toast(page, "Not authorised")).to_be_visible()

    # Keyboard only: the field, the key, Enter.
    page.get_by_label("Admin token or API key").fill(acme["api_key"])
    page.keyboard.press("Enter")
    expect(page.locator("#role-badge")).to_have_text("Tenant · acme")
    expect(page.locator(".tenant-item")).to_have_count(1)
    expect(page.locator("#tenant-create")).to_be_hidden()
    expect(page.locator(".tenant-settings-button")).to_be_hidden()  # the admin's only
    expect_live(page)
    expect(page.locator("#feed-state")).to_contain_text("No events yet")

    server.post_events(acme["api_key"], events("mine"))
    expect(rows(page)).to_have_count(1)
    assert row_types(page) == ["mine"]

    # A narrow screen: one column, nothing wider than the viewport.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#feed-list")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_signing_in_after_a_failed_attempt_clears_its_errors(page, server, console):
    acme = server.create_tenant("acme")
    console.allow(HTTP_STATUS_LOGGED.format(status=401))
    sign_in_with_form(page, server, "ik_not-a-real-key")
    failed = toast(page, "Not authorised")
    expect(failed).to_be_visible()
    expect(page.locator("#signin-error")).to_be_visible()

    page.get_by_label("Admin token or API key").fill(acme["api_key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#role-badge")).to_have_text("Tenant · acme")
    # Gone at once, not when it times out by itself (8 s): so no waiting assertion here.
    assert failed.count() == 0
    expect(page.get_by_label("Admin token or API key")).not_to_have_attribute(
        "aria-invalid", "true"
    )

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-error")).to_be_hidden()


def test_admin_view_renews_the_tenant_token_before_it_expires(page, live_server_factory):
    server = live_server_factory(mode="eventlet", TOKEN_TTL_SECONDS="3")
    acme = server.create_tenant("acme")
    token_requests = []
    page.on("request", lambda r: token_requests.append(r) if r.url.endswith("/token") else None)
    sign_in_as_admin(page, server)
    expect_live(page)

    deadline = 8_000
    while len(token_requests) < 3 and deadline > 0:  # issued at once, then every ~1.4 s
        page.wait_for_timeout(200)
        deadline -= 200
    assert len(token_requests) >= 3

    # Calls made now carry a fresh token: a 401 would fail this test through the console.
    page.get_by_label("Event type").fill("after.renewal")
    page.get_by_role("button", name="Send event").click()
    expect(toast(page, "Event sent")).to_be_visible()
    server.post_events(acme["api_key"], events("still.live"))
    expect(rows(page)).to_have_count(2)


# --- tenants ------------------------------------------------------------------------------


def test_admin_creates_a_tenant_and_sees_its_key_once(page, server, console):
    sign_in_with_form(page, server, ADMIN_TOKEN)
    expect(page.locator("#tenants-state")).to_contain_text("No tenants yet")

    page.get_by_label("Name").fill("acme")
    page.get_by_label("Rate limit").fill("120")
    page.get_by_label("Rate limit").press("Enter")

    dialog = page.get_by_role("dialog", name="API key for acme")
    expect(dialog).to_be_visible()
    api_key = page.locator("#api-key-value").input_value()
    assert api_key.startswith("ik_")
    curl = page.locator("#api-key-curl").input_value()
    assert f"'{server.url}/api/v1/events'" in curl and f"X-API-Key: {api_key}" in curl

    dialog.get_by_role("button", name="Copy key").click()
    expect(toast(page, "Copied to the clipboard")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == api_key

    dialog.get_by_role("button", name="I have saved the key").click()
    expect(dialog).to_be_hidden()
    # Shown once, then gone (cleared by the dialog's "close" event, which fires after it hides).
    expect(page.locator("#api-key-value")).to_have_value("")
    selected = page.locator(".tenant-item[aria-pressed=true]")
    expect(selected.locator(".tenant-name")).to_have_text("acme")
    expect(selected.locator(".tenant-limit")).to_have_text("120/min")
    expect(selected.locator(".tenant-status")).to_have_text("Active")
    expect(selected).to_have_attribute("data-live", "connected")

    # The key works, and its events reach the admin's view of the tenant.
    assert server.post_events(api_key, events("hello")).status_code == 201
    expect(rows(page)).to_have_count(1)

    console.allow(HTTP_STATUS_LOGGED.format(status=409))
    page.get_by_label("Name").fill("acme")
    page.get_by_role("button", name="Create tenant").click()
    expect(toast(page, "Already exists")).to_be_visible()
    expect(page.locator("#tenant-name-error")).to_have_text(
        "A tenant with this name already exists."
    )


# --- the live feed, statistics and the send form ------------------------------------------


def test_events_appear_live_in_the_feed_and_the_statistics(page, server, console):
    acme = server.create_tenant("acme")
    sign_in_as_admin(page, server)
    expect_live(page)
    expect(page.locator("#stat-total")).to_have_text("0")

    server.post_events(acme["api_key"], events("user.signup", "page.view", "page.view", path="/"))
    expect(rows(page)).to_have_count(3)
    assert row_types(page) == ["page.view", "page.view", "user.signup"]  # newest on top
    expect(page.locator("#stat-total")).to_have_text("3")
    expect(page.locator("#stat-last-hour")).to_have_text("3")
    bars = page.locator("#type-bars .type-bar")
    expect(bars).to_have_count(2)
    expect(bars.first).to_contain_text("page.view")
    widths = page.locator(".type-bar-fill").evaluate_all("els => els.map(e => e.style.width)")
    assert widths == ["100%", "50%"]  # proportional to the counts
    expect(page.locator("#rate-chart rect.bar:not(.bar-empty)")).to_have_count(1)

    # Metadata is attacker-controlled: it is shown as text, never as markup.
    hostile = {"html": "<img src=x onerror=alert(1)>"}
    server.post_events(acme["api_key"], [{"type": "xss.try", "metadata": hostile}])
    newest = rows(page).first
    expect(newest.locator(".event-type")).to_have_text("xss.try")
    newest.locator("summary").focus()
    page.keyboard.press("Enter")  # expand with the keyboard
    expect(newest.locator(".event-metadata")).to_be_visible()
    assert json.loads(newest.locator(".event-metadata").text_content()) == hostile
    expect(page.locator("#feed-list img")).to_have_count(0)

    # Paused, new events wait behind a counter; resuming shows them.
    page.get_by_role("button", name="Pause").click()
    server.post_events(acme["api_key"], events("while.paused"))
    expect(page.locator("#pending-button")).to_have_text("1 new event · show")
    expect(rows(page)).to_have_count(4)
    page.get_by_role("button", name="Resume").click()
    expect(rows(page)).to_have_count(5)
    assert row_types(page)[0] == "while.paused"

    # The send form validates before sending, then sends.
    page.get_by_label("Event type").fill("order.created")
    page.get_by_label("Metadata").fill('{"total": 12,}')
    page.get_by_role("button", name="Send event").click()
    expect(toast(page, "Invalid input")).to_be_visible()
    expect(page.get_by_label("Metadata")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Metadata").fill('{"total": 12, "currency": "EUR"}')
    page.get_by_role("button", name="Send event").click()
    expect(toast(page, "Event sent")).to_be_visible()
    expect(rows(page).first.locator(".event-type")).to_have_text("order.created")
    expect(page.locator("#stat-total")).to_have_text("6")
    expect(page.locator("#send-quota")).to_contain_text("left this minute")


def test_rows_show_the_date_for_events_from_another_day(page, server):
    acme = server.create_tenant("acme")
    then = datetime.now(UTC) - timedelta(days=3)
    server.post_events(acme["api_key"], [{"type": "old.one", "timestamp": then.isoformat()}])
    server.post_events(acme["api_key"], events("new.one"))
    sign_in_as_admin(page, server)
    expect(rows(page)).to_have_count(2)

    zone = ZoneInfo(page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
    new_time, old_time = page.locator("#feed-list .event-time").all_text_contents()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", new_time)  # today: the time alone
    assert old_time == f"{then.astimezone(zone):%Y-%m-%d %H:%M:%S}"


def test_rows_of_today_get_their_date_once_midnight_passes(page, server):
    acme = server.create_tenant("acme")
    zone = ZoneInfo(page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"))
    midnight = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    late = midnight - timedelta(minutes=1)
    server.post_events(acme["api_key"], [{"type": "late", "timestamp": late.isoformat()}])
    page.clock.install(time=midnight - timedelta(seconds=10))  # the page's "now": 23:59:50
    sign_in_with_form(page, server, acme["api_key"])
    time = rows(page).first.locator(".event-time")
    expect(time).to_have_text("23:59:00")

    page.clock.run_for(15_000)
    expect(time).to_have_text(f"{late:%Y-%m-%d} 23:59:00")


def test_filters_and_search_query_the_server_and_page_through_history(page, server):
    acme = server.create_tenant("acme")
    server.post_events(acme["api_key"], events(*["page.view"] * 55, path="/home"))
    server.post_events(acme["api_key"], events("user.signup", "user.signup", plan="basic"))
    server.post_events(acme["api_key"], events("user.signup", plan="enterprise"))
    sign_in_as_admin(page, server)

    expect(rows(page)).to_have_count(50)  # one page
    page.get_by_role("button", name="Load older events").click()
    expect(rows(page)).to_have_count(58)
    expect(page.get_by_role("button", name="Load older events")).to_be_hidden()

    type_filter = page.locator("#filter-type")
    expect(type_filter.locator("option[value='user.signup']")).to_have_count(1)
    with page.expect_response(lambda r: "type=user.signup" in r.url):
        type_filter.select_option("user.signup")
    expect(rows(page)).to_have_count(3)
    assert set(row_types(page)) == {"user.signup"}

    with page.expect_response(lambda r: "q=enterprise" in r.url):
        page.get_by_label("Search").fill("enterprise")
    expect(rows(page)).to_have_count(1)

    # Live events obey the active filters too.
    server.post_events(acme["api_key"], events("page.view", path="/enterprise"))
    server.post_events(acme["api_key"], events("user.signup", plan="enterprise"))
    expect(rows(page)).to_have_count(2)
    assert row_types(page) == ["user.signup", "user.signup"]

    page.get_by_role("button", name="Clear").click()
    expect(rows(page)).to_have_count(50)
    assert row_types(page)[:2] == ["user.signup", "page.view"]


def test_rate_limit_shows_a_toast_with_retry_after(page, server, console):
    acme = server.create_tenant("acme", rate_limit=3)
    sign_in_with_form(page, server, acme["api_key"])
    expect_live(page)
    assert server.post_events(acme["api_key"], events("a", "b", "c")).status_code == 201

    console.allow(HTTP_STATUS_LOGGED.format(status=429))
    page.get_by_label("Event type").fill("one.too.many")
    page.get_by_role("button", name="Send event").click()
    limited = toast(page, "Rate limit reached: retry in")
    expect(limited).to_be_visible()
    assert re.search(r"retry in \d+ s", limited.locator(".toast-title").text_content())
    expect(page.locator("#send-button")).to_be_disabled()
    expect(page.locator("#send-button")).to_have_text(re.compile(r"Retry in \d+ s"))


# --- reconnection -------------------------------------------------------------------------


def test_reconnects_after_the_server_drops_and_replays_missed_events(
    page, server, live_server_factory, console
):
    acme = server.create_tenant("acme")
    sign_in_as_admin(page, server)  # the admin's socket uses the tenant JWT
    expect_live(page)
    server.post_events(acme["api_key"], events("before"))
    expect(rows(page)).to_have_count(1)

    console.allow(SERVER_AWAY_LOGGED)
    server.stop()
    expect(page.locator("#connection-text")).to_have_text(re.compile(r"Reconnecting"))
    expect(toast(page, "Connection lost")).to_be_visible()
    expect(page.locator("#connection-text")).to_have_text(
        re.compile(r"Reconnecting \(attempt \d+\)")
    )
    page.get_by_label("Event type").fill("while.away")
    page.get_by_role("button", name="Send event").click()
    expect(toast(page, "Network problem")).to_be_visible()

    # While the page is cut off, another server on the same database stores events.
    stand_in = live_server_factory(mode="eventlet", database_url=server.env["DATABASE_URL"])
    stand_in.post_events(acme["api_key"], events("missed.1", "missed.2", "missed.3"))
    stand_in.stop()
    server.start(migrate=False)

    expect_live(page)
    expect(toast(page, "Reconnected")).to_contain_text("3 missed events caught up")
    expect(rows(page)).to_have_count(4)
    server.post_events(acme["api_key"], events("after"))
    expect(rows(page)).to_have_count(5)
    assert row_types(page) == ["after", "missed.3", "missed.2", "missed.1", "before"]
    expect(page.locator("#stat-total")).to_have_text("5")


# --- layout -------------------------------------------------------------------------------


def in_viewport(box: dict, viewport: dict) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


def test_statistics_are_in_view_beside_the_feed_at_1280_by_800(page, server):
    acme = server.create_tenant("acme")
    server.post_events(acme["api_key"], events("page.view", "user.signup", "cart.updated"))
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_in_as_admin(page, server)
    expect(page.locator("#stat-total")).to_have_text("3")
    expect(page.locator("#type-bars .type-bar")).to_have_count(3)

    assert page.evaluate("window.scrollY") == 0
    assert in_viewport(page.locator("#stats-panel").bounding_box(), page.viewport_size)
    feed = page.locator("#feed-scroll").bounding_box()
    assert feed["width"] >= 600 and feed["y"] < 800  # the feed keeps room and stays in view


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_toasts_on_a_phone_leave_the_feed_uncovered(page, server):
    acme = server.create_tenant("acme")
    server.post_events(acme["api_key"], events(*["page.view"] * 30))
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in_as_admin(page, server)
    expect(rows(page)).to_have_count(30)

    page.get_by_label("Event type").fill("not a type!")
    page.get_by_role("button", name="Send event").click()
    invalid = toast(page, "Invalid input")
    expect(invalid).to_be_visible()

    # Whether the feed sits at the top or the bottom of the screen, the toast is elsewhere.
    feed = page.locator("#feed-scroll")
    for block in ("start", "end"):
        feed.evaluate("(element, block) => element.scrollIntoView({block})", block)
        assert in_viewport(invalid.bounding_box(), page.viewport_size)
        assert not overlap(invalid.bounding_box(), feed.bounding_box()), block


# --- the screenshot in the README ---------------------------------------------------------

SAMPLE_EVENTS = [
    {"type": "page.view", "metadata": {"path": "/products/espresso-grinder", "ms": 182}},
    {"type": "page.view", "metadata": {"path": "/cart", "ms": 95}},
    {"type": "cart.updated", "metadata": {"items": 3, "total": 214.5, "currency": "EUR"}},
    {"type": "page.view", "metadata": {"path": "/", "ms": 121}},
    {"type": "user.signup", "metadata": {"plan": "free", "referrer": "search"}},
    {"type": "page.view", "metadata": {"path": "/pricing", "ms": 143}},
    {"type": "search.performed", "metadata": {"query": "burr grinder", "results": 12}},
]


def test_dashboard_with_live_data_screenshot(page, server):
    shop = server.create_tenant("acme-shop", rate_limit=600)
    server.create_tenant("globex")
    server.create_tenant("initech-billing", rate_limit=120)

    # An hour of plausible traffic (a daily-ish swell and a burst), for the chart.
    now = datetime.now(UTC)
    history = []
    for minute in range(58, 0, -1):
        at = now - timedelta(minutes=minute)
        per_minute = round(4 + 3 * math.sin(minute / 9) + (5 if 18 < minute < 24 else 0))
        per_minute += (minute * 7919) % 3
        for n in range(per_minute):
            stamp = (at + timedelta(seconds=n * 5)).isoformat()
            history.append({"timestamp": stamp, **SAMPLE_EVENTS[(minute * 3 + n) % 7]})
    for start in range(0, len(history), 500):
        server.post_events(shop["api_key"], history[start : start + 500])

    sign_in_as_admin(page, server)
    expect_live(page)
    live = [
        {
            "type": "order.created",
            "metadata": {"order_id": "A-1042", "total": 129.9, "currency": "EUR"},
        },
        {"type": "payment.failed", "metadata": {"order_id": "A-1041", "reason": "card_declined"}},
        {"type": "user.signup", "metadata": {"plan": "pro", "referrer": "newsletter"}},
        {"type": "page.view", "metadata": {"path": "/checkout", "ms": 412}},
    ]
    for event in live:
        server.post_events(shop["api_key"], [event])
    expect(rows(page).first.locator(".event-type")).to_have_text("page.view")
    expect(page.locator("#stat-total")).to_have_text(f"{len(history) + len(live):,}")
    rows(page).nth(3).locator("summary").click()  # order.created, expanded
    page.wait_for_timeout(300)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000
