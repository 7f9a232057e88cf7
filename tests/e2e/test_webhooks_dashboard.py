"""The dashboard's webhooks view in a real browser, against a live server that delivers to a
real receiver on 127.0.0.1 (WEBHOOK_ALLOW_PRIVATE, tests/receivers.py); signatures are
checked as a receiver would, with the standardwebhooks package."""

from __future__ import annotations

import re

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from tests.receivers import Receiver

from .browser import HTTP_STATUS_LOGGED, expect, sign_in_as_admin, sign_in_with_form, toast

pytestmark = pytest.mark.e2e

# Retries an hour apart: a failed delivery waits for the dashboard's Retry, not the schedule.
SERVER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE": "1",
    "WEBHOOK_RETRY_SCHEDULE": "3600",
    "WEBHOOK_WORKER": "process",
}


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def server(live_server_factory):
    return live_server_factory(mode="eventlet", **SERVER_ENV)


# --- helpers ------------------------------------------------------------------------------


def endpoint_item(page, url: str):
    return page.locator(".webhook-item").filter(
        has=page.locator(".webhook-url", has_text=re.compile(f"^{re.escape(url)}$"))
    )


def delivery_row(page, message_id: str):
    return page.locator("#delivery-rows > tr").filter(
        has=page.locator(".delivery-message", has_text=message_id)
    )


def expect_delivery(row, status: str, code: str, attempts: str) -> None:
    expect(row.locator(".delivery-status")).to_have_text(status)
    expect(row.locator(".delivery-code")).to_have_text(code)
    expect(row.locator(".delivery-attempts")).to_have_text(attempts)


def create_endpoint_in_the_form(page, url: str, types: str = "", description: str = ""):
    """Fills and sends the form; returns the dialog that shows the secret."""
    page.get_by_label("URL", exact=True).fill(url)
    page.get_by_label("Types to deliver").fill(types)
    page.get_by_label("Description").fill(description)
    page.get_by_role("button", name="Create endpoint").click()
    dialog = page.get_by_role("dialog", name=f"Signing secret for {url}")
    expect(dialog).to_be_visible()
    return dialog


def save_secret(page, dialog) -> str:
    """Reads the secret the dialog shows once, then closes it."""
    secret = page.locator("#webhook-secret-value").input_value()
    dialog.get_by_role("button", name="I have saved the secret").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#webhook-secret-value")).to_have_value("")
    return secret


def tenant_api(server, tenant: dict, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{server.url}/api/v1{path}",
        headers={"X-API-Key": tenant["api_key"]},
        timeout=10,
        **kwargs,
    )


# --- tests --------------------------------------------------------------------------------


def test_new_endpoint_shows_its_secret_once_and_it_verifies_real_deliveries(page, server, receiver):
    acme = server.create_tenant("acme")
    sign_in_as_admin(page, server)  # the admin, acting for the tenant selected
    expect(page.locator("#webhooks-tenant")).to_have_text("acme")
    expect(page.locator("#webhooks-state")).to_contain_text("No endpoints yet")

    dialog = create_endpoint_in_the_form(
        page, receiver.url, types="order.created, user.signup", description="The warehouse"
    )
    expect(dialog.locator(".warning")).to_contain_text("only time the secret is shown")
    secret = page.locator("#webhook-secret-value").input_value()
    assert secret.startswith("whsec_")
    snippet = page.locator("#webhook-secret-snippet").input_value()
    assert f'Webhook("{secret}")' in snippet and "webhook.verify(body, headers)" in snippet
    dialog.get_by_role("button", name="Copy secret").click()
    expect(toast(page, "Copied to the clipboard")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert save_secret(page, dialog) == secret  # and it is gone from the page

    item = endpoint_item(page, receiver.url)
    expect(item.locator(".webhook-status")).to_have_text("Enabled")
    expect(item.locator(".webhook-types > li")).to_have_text(["order.created", "user.signup"])
    expect(item.locator(".webhook-description")).to_have_text("The warehouse")
    expect(page.locator("#deliveries-state")).to_contain_text("No deliveries yet")

    # A real delivery of a stored event, of a type the endpoint asked for: the secret shown
    # verifies it, with the snippet exactly as the dialog gave it.
    stored = server.post_events(
        acme["api_key"], [{"type": "page.view"}, {"type": "order.created", "id": "order-1"}]
    )
    assert stored.status_code == 201
    [delivered] = receiver.wait_for(1)
    assert Webhook(secret).verify(delivered.body, delivered.headers)["data"]["id"] == "order-1"
    as_received = {"body": delivered.body, "headers": delivered.headers}
    exec(snippet, as_received)  # noqa: S102 - the dashboard's snippet, run as a receiver would
    assert as_received["message"]["type"] == "order.created"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(delivered.body.replace(b"order-1", b"order-2"), delivered.headers)

    page.get_by_role("button", name="Refresh").click()
    expect_delivery(delivery_row(page, "order-1"), "Succeeded", "200", "1")

    # A test message: queued, sent, and the list follows it until it has succeeded.
    page.get_by_role("button", name="Send test").click()
    expect(toast(page, "Test queued")).to_be_visible()
    test = receiver.wait_for(2)[1]
    assert Webhook(secret).verify(test.body, test.headers)["type"] == "webhook.test"
    newest = page.locator("#delivery-rows > tr").first
    expect(newest.locator(".delivery-message")).to_have_text(test.webhook_id)
    expect_delivery(newest, "Succeeded", "200", "1")
    expect(page.locator("#delivery-rows > tr")).to_have_count(2)
    assert len(receiver.requests) == 2  # page.view was not for this endpoint


def test_a_failed_delivery_is_retried_from_the_deliveries_list(page, server, receiver):
    acme = server.create_tenant("acme")
    sign_in_with_form(page, server, acme["api_key"])  # the tenant itself
    expect(page.locator("#webhooks-tenant")).to_have_text("acme")
    save_secret(page, create_endpoint_in_the_form(page, receiver.url))

    receiver.status, receiver.reply = 500, b"receiver is down"
    page.get_by_role("button", name="Send test").click()
    [failed] = receiver.wait_for(1)
    row = delivery_row(page, failed.webhook_id)
    expect_delivery(row, "Pending", "500", "1")  # the next try is an hour away
    expect(row.locator(".delivery-error")).to_have_text("receiver is down")
    expect(row.locator(".delivery-next")).to_contain_text("next try")

    receiver.status, receiver.reply = 200, b"received"
    row.get_by_role("button", name="Retry").click()
    expect(toast(page, "Retry queued")).to_be_visible()
    expect_delivery(row, "Succeeded", "200", "2")
    expect(row.locator(".delivery-error")).to_have_text("")
    assert receiver.wait_for(2)[1].webhook_id == failed.webhook_id  # the same message, again


def test_endpoint_is_disabled_enabled_rotated_and_deleted_after_confirmation(
    page, server, receiver, console
):
    acme = server.create_tenant("acme")
    created = tenant_api(server, acme, "POST", "/webhooks", json={"url": receiver.url})
    old_secret = created.json()["secret"]
    sign_in_with_form(page, server, acme["api_key"])
    item = endpoint_item(page, receiver.url)
    expect(item.locator(".webhook-status")).to_have_text("Enabled")
    expect(item.locator(".webhook-types")).to_have_text("All event types")

    item.get_by_role("button", name="Disable").click()
    expect(toast(page, "Endpoint disabled")).to_be_visible()
    expect(item.locator(".webhook-status")).to_have_text("Disabled")
    expect(item.locator(".webhook-reason")).to_have_text("Disabled through the API.")
    expect(item.get_by_role("button", name="Send test")).to_be_disabled()
    toggle = item.get_by_role("button", name="Enable")
    expect(toggle).to_be_focused()  # redrawn, and focus stays where the keyboard left it
    page.keyboard.press("Enter")
    expect(item.locator(".webhook-status")).to_have_text("Enabled")
    expect(item.locator(".webhook-reason")).to_be_hidden()

    # Disabled behind the page's back: the refusal is a toast, and the page catches up.
    endpoint_id = created.json()["id"]
    tenant_api(server, acme, "PATCH", f"/webhooks/{endpoint_id}", json={"enabled": False})
    console.allow(HTTP_STATUS_LOGGED.format(status=409))
    item.get_by_role("button", name="Send test").click()
    expect(toast(page, "Enable the endpoint first")).to_contain_text("The endpoint is disabled")
    expect(item.locator(".webhook-status")).to_have_text("Disabled")
    item.get_by_role("button", name="Enable").click()
    expect(item.locator(".webhook-status")).to_have_text("Enabled")

    # Rotation shows the new secret once; the old one still signs beside it for a while.
    item.get_by_role("button", name="Rotate secret").click()
    dialog = page.get_by_role("dialog", name=f"New signing secret for {receiver.url}")
    expect(dialog).to_be_visible()
    expect(page.locator("#webhook-secret-rotated")).to_be_visible()
    new_secret = save_secret(page, dialog)
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    item.get_by_role("button", name="Send test").click()
    [signed] = receiver.wait_for(1)
    assert Webhook(new_secret).verify(signed.body, signed.headers)["type"] == "webhook.test"
    assert Webhook(old_secret).verify(signed.body, signed.headers)["type"] == "webhook.test"

    # Deleting asks first; Escape (or Cancel) keeps the endpoint.
    item.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete this endpoint?")
    expect(confirm).to_contain_text(receiver.url)
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(item).to_have_count(1)
    item.get_by_role("button", name="Delete").click()
    confirm.get_by_role("button", name="Delete endpoint").click()
    expect(toast(page, "Endpoint deleted")).to_be_visible()
    expect(item).to_have_count(0)
    expect(page.locator("#webhooks-state")).to_contain_text("No endpoints yet")
    expect(page.locator("#webhooks-heading")).to_be_focused()
    assert tenant_api(server, acme, "GET", "/webhooks").json() == {"data": []}


def test_the_form_checks_its_fields_and_shows_what_the_server_refused(page, server, console):
    sign_in_as_admin(page, server)
    expect(page.locator("#webhooks-state")).to_have_text("No tenant selected.")
    page.get_by_label("Name").fill("acme")
    page.get_by_role("button", name="Create tenant").click()
    page.get_by_role("button", name="I have saved the key").click()
    expect(page.locator("#webhooks-state")).to_contain_text("No endpoints yet")

    url = page.get_by_label("URL", exact=True)
    types = page.get_by_label("Types to deliver")
    url.fill("ftp://example.com/hooks")
    types.fill("order.created, not a type")
    page.get_by_role("button", name="Create endpoint").click()
    expect(toast(page, "Invalid input")).to_be_visible()
    expect(page.locator("#webhook-url-error")).to_have_text(
        "Only http and https URLs can receive webhooks."
    )
    expect(page.locator("#webhook-types-error")).to_contain_text("“not a type” is not")
    expect(types).to_have_attribute("aria-invalid", "true")
    expect(url).to_be_focused()

    # What only the server knows is shown beside its field too.
    console.allow(HTTP_STATUS_LOGGED.format(status=400))
    url.fill("http://user:password@127.0.0.1/hooks")
    types.fill("")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.locator("#webhook-url-error")).to_have_text(
        "The URL must not carry credentials (user:password@)."
    )
    refused = toast(page, "Invalid input").filter(has_text="The webhook URL is refused.")
    expect(refused).to_be_visible()
