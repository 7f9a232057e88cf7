"""Webhooks through the API and the delivery worker, to real receivers on 127.0.0.1.

The worker runs its steps in the test's thread (run_once: claim, send, record), or in
the background where concurrency is the point.
"""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from sqlalchemy import select, text, update

from ingest.extensions import db
from ingest.models import WebhookDelivery, WebhookEndpoint
from tests.receivers import Receiver
from tests.support import ADMIN_TOKEN, create_tenant, post_events

# Retries at once: the schedule's length (two retries) is what these tests exercise.
QUICK = {"WEBHOOK_ALLOW_PRIVATE": True, "WEBHOOK_RETRY_SCHEDULE": (0.0, 0.0)}


@pytest.fixture
def app(make_app):
    return make_app(**QUICK)


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.gate.set()
    receiver.close()


def add_endpoint(client, tenant, url, **fields) -> dict:
    response = client.post(
        "/api/v1/webhooks", json={"url": url, **fields}, headers=tenant["headers"]
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def deliver(app, rounds: int = 1) -> int:
    """Run the worker's claim-send-record steps ``rounds`` times; how many were sent."""
    return sum(app.extensions["webhook_worker"].run_once() for _ in range(rounds))


def deliveries(client, tenant, endpoint, **query) -> list[dict]:
    response = client.get(
        f"/api/v1/webhooks/{endpoint['id']}/deliveries",
        query_string=query,
        headers=tenant["headers"],
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def verify(secret: str, request) -> dict:
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)


# --- endpoints -----------------------------------------------------------------------------------


def test_an_endpoint_shows_its_secret_on_creation_only(client, tenant, receiver):
    created = add_endpoint(client, tenant, receiver.url, types=["order.paid"], description="orders")
    assert created["id"].startswith("wh_")
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) >= 24
    assert created | {"secret": None, "id": None, "created_at": None} == {
        "id": None,
        "url": receiver.url,
        "types": ["order.paid"],
        "description": "orders",
        "enabled": True,
        "disabled_reason": None,
        "created_at": None,
        "secret": None,
    }
    listed = client.get("/api/v1/webhooks", headers=tenant["headers"]).get_json()["data"]
    shown = client.get(f"/api/v1/webhooks/{created['id']}", headers=tenant["headers"]).get_json()
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0] and "secret" not in shown
    assert created["secret"] not in str(listed) + str(shown)


def test_endpoints_are_changed_and_deleted(client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    path = f"/api/v1/webhooks/{endpoint['id']}"
    changed = client.patch(
        path,
        json={"types": ["b", "a", "a"], "description": "d", "enabled": False},
        headers=tenant["headers"],
    )
    assert changed.status_code == 200
    assert changed.get_json() | {"created_at": None} == {
        "id": endpoint["id"],
        "url": receiver.url,
        "types": ["a", "b"],
        "description": "d",
        "enabled": False,
        "disabled_reason": "Disabled through the API.",
        "created_at": None,
    }
    assert client.delete(path, headers=tenant["headers"]).status_code == 204
    assert client.get(path, headers=tenant["headers"]).status_code == 404
    assert client.delete(path, headers=tenant["headers"]).status_code == 404


def test_another_tenants_endpoint_is_not_found_whatever_the_call(client, tenant, receiver):
    other = create_tenant(client, "globex")
    theirs = add_endpoint(client, other, receiver.url)
    post_events(client, other, {"type": "t"})
    deliver(client.application)
    delivery = deliveries(client, other, theirs)[0]["id"]
    path = f"/api/v1/webhooks/{theirs['id']}"
    calls = [
        ("get", path, None),
        ("patch", path, {"enabled": False}),
        ("post", f"{path}/rotate-secret", None),
        ("post", f"{path}/test", None),
        ("get", f"{path}/deliveries", None),
        ("post", f"{path}/deliveries/{delivery}/retry", None),
        ("post", f"{path}/replay", {"since": "2000-01-01T00:00:00Z"}),
        ("delete", path, None),
    ]
    for method, url, body in calls:
        response = getattr(client, method)(url, json=body, headers=tenant["headers"])
        assert response.status_code == 404, (method, url, response.get_json())
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/webhooks", headers=tenant["headers"]).get_json()["data"] == []
    # ...and the owner still has it, untouched.
    mine = client.get(path, headers=other["headers"]).get_json()
    assert mine["enabled"] is True
    assert len(receiver.requests) == 1


def test_the_admin_token_cannot_manage_a_tenants_webhooks(client, receiver):
    response = client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 403


def test_a_tenant_has_at_most_the_configured_number_of_endpoints_even_when_racing(
    make_app, receiver
):
    app = make_app(**QUICK, WEBHOOK_MAX_PER_TENANT=3)
    tenant = create_tenant(app.test_client(), "acme")
    statuses = []

    def create():
        response = app.test_client().post(
            "/api/v1/webhooks", json={"url": receiver.url}, headers=tenant["headers"]
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [201] * 3 + [409] * 5
    listed = app.test_client().get("/api/v1/webhooks", headers=tenant["headers"])
    assert len(listed.get_json()["data"]) == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": ""},
        {"url": 5},
        {"url": "http://127.0.0.1/x", "types": "order.paid"},
        {"url": "http://127.0.0.1/x", "types": ["has space"]},
        {"url": "http://127.0.0.1/x", "secret": "whsec_mine"},
        {"url": "http://127.0.0.1/x\u0000"},
        {"url": "http://127.0.0.1/" + "x" * 2048},
        {"url": "http://127.0.0.1/x", "description": "d" * 501},
    ],
)
def test_malformed_endpoints_get_a_validation_error(client, tenant, body):
    response = client.post("/api/v1/webhooks", json=body, headers=tenant["headers"])
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("enabled", ["false", 0, None, "yes"])
def test_enabled_must_be_a_json_boolean(client, tenant, receiver, enabled):
    endpoint = add_endpoint(client, tenant, receiver.url)
    response = client.patch(
        f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": enabled}, headers=tenant["headers"]
    )
    assert response.status_code == 400


# --- safety: where webhooks may go --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[fe80::1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:7f00:1::]/",
        "http://2130706433/",
        "ftp://93.184.216.34/",
        "file:///etc/passwd",
        "gopher://93.184.216.34/",
        "http://user:pass@93.184.216.34/",
        "http:///nohost",
        "http://93.184.216.34:99999/",
        "http://93.184.216.34:0/",
        "http://93.184.216.34/a b",
        "http://93.184.216.34/\r\nX-Injected: 1",
        "http://93.184.216.34\t/",
        "http://bücher.example/",
        "HTTP://[::1]/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://017700000001/",
        "http://0177.0.0.1/",
        "http://127.0.0.1./",
        "http://0/",
        "http://169.254.43518/",
        "http://[::7f00:1]/",
        "http://[::ffff:0:7f00:1]/",
        "http://[fec0::1]/",
        "http://a..b/",
        "http://" + "a" * 64 + ".example/",
    ],
)
def test_urls_that_could_reach_inside_the_network_are_refused(make_app, url):
    client = make_app().test_client()
    tenant = create_tenant(client, "acme")
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=tenant["headers"])
    assert response.status_code == 400, (url, response.get_json())
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and error["details"]["url"]


@pytest.mark.parametrize(
    "url", ["http://93.184.216.34/hook?x=1", "https://[2606:4700:4700::1111]:8443/h"]
)
def test_public_addresses_are_accepted(make_app, url):
    client = make_app().test_client()
    tenant = create_tenant(client, "acme")
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=tenant["headers"])
    assert response.status_code == 201, response.get_json()


def test_sends_are_checked_against_the_address_connected_to(make_app, receiver):
    """An endpoint that passed its check (here: allowed when it was made) but resolves to
    a private address when sent to gets nothing sent: the check runs at every send."""
    lenient = make_app(**QUICK)
    client = lenient.test_client()
    tenant = create_tenant(client, "acme")
    endpoint = add_endpoint(client, tenant, receiver.url.replace("127.0.0.1", "localhost"))
    post_events(client, tenant, {"type": "t"})

    strict = make_app(WEBHOOK_RETRY_SCHEDULE=(60.0,))
    assert deliver(strict) == 1
    assert receiver.requests == []
    [delivery] = deliveries(client, tenant, endpoint)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert "not public" in delivery["last_error"]


# --- delivery -----------------------------------------------------------------------------------


def test_each_event_is_delivered_as_a_standard_webhook(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "order.paid", "metadata": {"total": 12, "名": "é"}})
    assert deliver(app) == 1
    [request] = receiver.requests
    stored = client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"][0]
    assert verify(endpoint["secret"], request) == {
        "type": "order.paid",
        "timestamp": stored["timestamp"],
        "data": stored,
    }
    assert request.webhook_id == stored["id"]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("ingest-webhooks/")
    assert request.path == "/hook"
    [delivery] = deliveries(client, tenant, endpoint)
    assert delivery | {"id": None, "created_at": None, "delivered_at": None} == {
        "id": None,
        "event_id": stored["id"],
        "status": "succeeded",
        "attempts": 1,
        "last_status_code": 200,
        "last_error": None,
        "last_response": "received",
        "next_attempt_at": None,
        "created_at": None,
        "delivered_at": None,
    }


def test_endpoints_get_only_the_types_they_asked_for(app, client, tenant, receiver):
    every = Receiver()
    try:
        add_endpoint(client, tenant, receiver.url, types=["order.paid", "order.refunded"])
        add_endpoint(client, tenant, every.url)
        post_events(
            client,
            tenant,
            {"type": "order.paid", "id": "p"},
            {"type": "page.view", "id": "v"},
            {"type": "order.refunded", "id": "r"},
        )
        deliver(app)
        assert sorted(receiver.ids()) == ["p", "r"]
        assert sorted(every.ids()) == ["p", "r", "v"]
    finally:
        every.close()


def test_a_delivery_that_fails_twice_then_succeeds_is_sent_three_times_under_one_id(
    app, client, tenant, receiver
):
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.answers.extend([500, 503])
    post_events(client, tenant, {"type": "t", "id": "once"})
    assert deliver(app, rounds=3) == 3
    assert receiver.ids() == ["once"] * 3
    stamps = [r.headers["webhook-timestamp"] for r in receiver.requests]
    for request in receiver.requests:
        verify(endpoint["secret"], request)
    assert stamps == sorted(stamps)
    [delivery] = deliveries(client, tenant, endpoint)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "succeeded",
        3,
        200,
    )


def test_retries_follow_the_schedule_with_jitter(make_app, receiver):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_SCHEDULE=(100.0, 1000.0))
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.status = 500
    post_events(client, tenant, {"type": "t"})
    before = datetime.now(UTC)
    deliver(app)
    [delivery] = deliveries(client, tenant, endpoint)
    wait = datetime.fromisoformat(delivery["next_attempt_at"]) - before
    assert timedelta(seconds=89) < wait < timedelta(seconds=111)
    assert delivery["status"] == "pending" and delivery["last_status_code"] == 500
    assert deliver(app) == 0  # not due yet


def test_after_the_last_retry_a_delivery_is_failed(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.status = 500
    post_events(client, tenant, {"type": "t"})
    assert deliver(app, rounds=5) == 3  # the first attempt and two retries
    [delivery] = deliveries(client, tenant, endpoint)
    assert (delivery["status"], delivery["attempts"], delivery["next_attempt_at"]) == (
        "failed",
        3,
        None,
    )


def test_redirects_are_failures_and_not_followed(app, client, tenant, receiver):
    elsewhere = Receiver()
    try:
        endpoint = add_endpoint(client, tenant, receiver.url)
        receiver.status = 307
        receiver.extra_headers = {"Location": elsewhere.url}
        post_events(client, tenant, {"type": "t"})
        deliver(app)
        assert elsewhere.requests == []
        [delivery] = deliveries(client, tenant, endpoint)
        assert (delivery["status"], delivery["last_status_code"]) == ("pending", 307)
    finally:
        elsewhere.close()


def test_410_gone_disables_the_endpoint_and_nothing_more_is_queued(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.status = 410
    post_events(client, tenant, {"type": "t", "id": "first"})
    deliver(app, rounds=3)
    assert receiver.ids() == ["first"]
    shown = client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant["headers"]).get_json()
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]
    assert deliveries(client, tenant, endpoint)[0]["status"] == "failed"

    post_events(client, tenant, {"type": "t", "id": "while-disabled"})
    client.patch(
        f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": True}, headers=tenant["headers"]
    )
    receiver.status = 200
    post_events(client, tenant, {"type": "t", "id": "after"})
    deliver(app)
    # Re-enabling does not replay the gap: that takes /replay.
    assert receiver.ids() == ["first", "after"]


def test_an_endpoint_failing_for_longer_than_allowed_is_disabled(make_app, receiver):
    app = make_app(**QUICK, WEBHOOK_DISABLE_AFTER_S=3600)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.status = 500
    post_events(client, tenant, {"type": "t"})
    deliver(app)
    assert client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant["headers"]).get_json()[
        "enabled"
    ]
    with app.app_context():
        db.session.execute(
            update(WebhookEndpoint).values(failing_since=datetime.now(UTC) - timedelta(hours=2))
        )
        db.session.commit()
    deliver(app)
    shown = client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant["headers"]).get_json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "Every delivery failed for 1 hour."


def test_a_success_clears_the_failing_clock(app, client, tenant, receiver):
    add_endpoint(client, tenant, receiver.url)
    receiver.answers.append(500)
    post_events(client, tenant, {"type": "t"})
    deliver(app)
    with app.app_context():
        assert db.session.scalar(select(WebhookEndpoint.failing_since)) is not None
    deliver(app)
    with app.app_context():
        assert db.session.scalar(select(WebhookEndpoint.failing_since)) is None


def test_a_rotated_secret_signs_beside_the_new_one_during_the_grace_period(
    app, client, tenant, receiver
):
    endpoint = add_endpoint(client, tenant, receiver.url)
    rotated = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", headers=tenant["headers"]
    ).get_json()["secret"]
    assert rotated.startswith("whsec_") and rotated != endpoint["secret"]
    post_events(client, tenant, {"type": "t"})
    deliver(app)
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify(endpoint["secret"], request)
    verify(rotated, request)


def test_without_a_grace_period_only_the_new_secret_signs(make_app, receiver):
    app = make_app(**QUICK, WEBHOOK_SECRET_GRACE_S=0)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    endpoint = add_endpoint(client, tenant, receiver.url)
    rotated = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", headers=tenant["headers"]
    ).get_json()["secret"]
    post_events(client, tenant, {"type": "t"})
    deliver(app)
    [request] = receiver.requests
    verify(rotated, request)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verify(endpoint["secret"], request)


def test_a_test_message_goes_through_the_delivery_path(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    response = client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=tenant["headers"])
    assert response.status_code == 202
    deliver(app)
    [request] = receiver.requests
    message = verify(endpoint["secret"], request)
    assert message["type"] == "webhook.test"
    assert request.webhook_id == response.get_json()["event_id"] == message["data"]["id"]
    assert deliveries(client, tenant, endpoint)[0]["status"] == "succeeded"


def test_a_disabled_endpoint_takes_no_test_retry_or_replay(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    path = f"/api/v1/webhooks/{endpoint['id']}"
    client.patch(path, json={"enabled": False}, headers=tenant["headers"])
    for call, body in [("/test", None), ("/replay", {"since": "2000-01-01T00:00:00Z"})]:
        response = client.post(path + call, json=body, headers=tenant["headers"])
        assert response.status_code == 409, call


def test_deliveries_page_newest_first_and_filter_by_status(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.answers.extend([500, 500, 500])  # the first three events' first attempts fail
    post_events(client, tenant, *({"type": "t", "id": f"e{n}"} for n in range(5)))
    with app.app_context():
        app.extensions["webhook_worker"].policy = app.extensions["webhook_worker"].policy.__class__(
            schedule=(3600.0,), disable_after=timedelta(days=5)
        )
    deliver(app)
    page, seen, cursor = None, [], None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = client.get(
            f"/api/v1/webhooks/{endpoint['id']}/deliveries",
            query_string=query,
            headers=tenant["headers"],
        ).get_json()
        seen += [d["event_id"] for d in response["data"]]
        cursor = response["next_cursor"]
        if cursor is None:
            break
    assert seen == ["e4", "e3", "e2", "e1", "e0"]
    pending = deliveries(client, tenant, endpoint, status="pending")
    succeeded = deliveries(client, tenant, endpoint, status="succeeded")
    assert len(pending) == 3 and len(succeeded) == 2
    assert {d["status"] for d in pending} == {"pending"}
    assert page is None
    for bad in ({"status": "done"}, {"limit": 0}, {"limit": 201}, {"cursor": "nope"}):
        response = client.get(
            f"/api/v1/webhooks/{endpoint['id']}/deliveries",
            query_string=bad,
            headers=tenant["headers"],
        )
        assert response.status_code == 400, bad


def test_a_delivery_is_sent_again_on_request_whatever_its_status(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t", "id": "again"})
    deliver(app)
    [delivery] = deliveries(client, tenant, endpoint)
    path = f"/api/v1/webhooks/{endpoint['id']}/deliveries"
    assert (
        client.post(f"{path}/{delivery['id']}/retry", headers=tenant["headers"]).status_code == 202
    )
    deliver(app)
    assert receiver.ids() == ["again", "again"]
    assert deliveries(client, tenant, endpoint)[0]["attempts"] == 2
    for unknown in ("dlv_999999", "dlv_x", "999", "dlv_" + "9" * 30):
        response = client.post(f"{path}/{unknown}/retry", headers=tenant["headers"])
        assert response.status_code == 404, unknown


def test_a_replay_queues_every_matching_event_stored_since(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url, types=["keep"])
    post_events(client, tenant, {"type": "keep", "id": "before"})
    deliver(app)
    since = datetime.now(UTC).isoformat()
    post_events(
        client, tenant, {"type": "keep", "id": "k1"}, {"type": "skip"}, {"type": "keep", "id": "k2"}
    )
    deliver(app)
    response = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/replay",
        json={"since": since},
        headers=tenant["headers"],
    )
    assert response.status_code == 202 and response.get_json() == {"queued": 2}
    deliver(app)
    ids = receiver.ids()
    assert ids[0] == "before" and sorted(ids[1:3]) == sorted(ids[3:]) == ["k1", "k2"]
    for bad in ({}, {"since": "yesterday"}, {"since": "2026-01-01T00:00:00"}):
        response = client.post(
            f"/api/v1/webhooks/{endpoint['id']}/replay", json=bad, headers=tenant["headers"]
        )
        assert response.status_code == 400, bad


# --- durability and isolation ---------------------------------------------------------------------


def test_deliveries_exist_once_the_event_is_acknowledged(app, client, tenant, receiver):
    """Queued in the transaction that stores the event: nothing waits in memory."""
    add_endpoint(client, tenant, receiver.url)
    add_endpoint(client, tenant, receiver.url, types=["other"])
    assert (
        post_events(client, tenant, {"type": "t", "id": "a"}, {"type": "t", "id": "b"}).status_code
        == 201
    )
    with app.app_context():
        queued = db.session.execute(select(WebhookDelivery.event_id, WebhookDelivery.status)).all()
    assert sorted(queued) == [("a", "pending"), ("b", "pending")]


def test_a_duplicate_event_is_not_delivered_again(app, client, tenant, receiver):
    add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t", "id": "same"})
    post_events(client, tenant, {"type": "t", "id": "same"})
    deliver(app)
    assert receiver.ids() == ["same"]


def test_another_tenants_events_never_reach_an_endpoint(app, client, tenant, receiver):
    other = create_tenant(client, "globex")
    theirs = Receiver()
    try:
        add_endpoint(client, tenant, receiver.url)
        add_endpoint(client, other, theirs.url)
        post_events(client, tenant, {"type": "t", "id": "mine"})
        post_events(client, other, {"type": "t", "id": "theirs"})
        deliver(app)
        assert receiver.ids() == ["mine"] and theirs.ids() == ["theirs"]
    finally:
        theirs.close()


def test_a_delivery_whose_event_is_gone_fails_without_sending(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t"})
    with app.app_context():
        db.session.execute(text("DELETE FROM events"))
        db.session.commit()
    deliver(app)
    assert receiver.requests == []
    [delivery] = deliveries(client, tenant, endpoint)
    assert delivery["status"] == "failed" and "no longer stored" in delivery["last_error"]


def test_a_hostile_response_is_kept_short_and_storable(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.reply = b"\x00\xff" + b"x" * 1_000_000
    post_events(client, tenant, {"type": "t"})
    deliver(app)
    [delivery] = deliveries(client, tenant, endpoint)
    assert delivery["status"] == "succeeded"
    assert len(delivery["last_response"]) == 4096
    assert "\x00" not in delivery["last_response"]


def test_two_workers_never_send_the_same_delivery(make_app, receiver):
    app = make_app(**QUICK)
    second = make_app(**QUICK)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    add_endpoint(client, tenant, receiver.url)
    for start in range(0, 200, 50):
        post_events(
            client, tenant, *({"type": "t", "id": f"e{n}"} for n in range(start, start + 50))
        )
    sent = []

    def drain(worker_app):
        while (count := deliver(worker_app)) or len(receiver.requests) < 200:
            sent.append(count)
            if not count and len(receiver.requests) >= 200:
                break

    threads = [threading.Thread(target=drain, args=(a,)) for a in (app, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(receiver.ids()) == sorted(f"e{n}" for n in range(200))


def test_a_claim_whose_lease_ran_out_is_taken_over_and_the_late_outcome_ignored(make_app, receiver):
    app = make_app(**QUICK)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t", "id": "leased"})
    crashed = app.extensions["webhook_worker"]
    crashed.lease = timedelta(0)
    [(target, [claimed])] = crashed.claim_round()  # claimed, then "killed" before sending

    other = make_app(**QUICK)
    assert deliver(other) == 1
    assert receiver.ids() == ["leased"]
    receiver.status = 500
    crashed.record([crashed.send(target, claimed)])  # the stale worker comes back
    [delivery] = deliveries(client, tenant, endpoint)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "succeeded",
        1,
        200,
    )


def test_a_hanging_receiver_does_not_hold_up_another_endpoint(make_app, receiver):
    app = make_app(**QUICK, WEBHOOK_CONCURRENCY=2, WEBHOOK_POLL_MS=20)
    client = app.test_client()
    slow_tenant, fast_tenant = create_tenant(client, "slow"), create_tenant(client, "fast")
    fast = Receiver()
    worker = app.extensions["webhook_worker"]
    try:
        add_endpoint(client, slow_tenant, receiver.url)
        add_endpoint(client, fast_tenant, fast.url)
        receiver.gate.clear()  # the slow endpoint's receiver hangs
        post_events(client, slow_tenant, *({"type": "t"} for _ in range(20)))
        worker.start()
        receiver.wait_for(2)  # both of its slots are taken
        post_events(client, fast_tenant, *({"type": "t", "id": f"f{n}"} for n in range(30)))
        fast.wait_for(30)
        assert len(receiver.requests) == 2  # still hanging the whole time
    finally:
        worker.stop()
        receiver.gate.set()
        fast.close()


def test_finished_deliveries_are_pruned_after_the_retention_period(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t", "id": "old"})
    deliver(app)
    receiver.status = 500
    post_events(client, tenant, {"type": "t", "id": "new"})
    deliver(app)
    old = datetime.now(UTC) - timedelta(days=31)
    with app.app_context():
        db.session.execute(update(WebhookDelivery).values(created_at=old))
        db.session.commit()
    assert app.extensions["webhook_worker"].prune() == 1
    assert [d["event_id"] for d in deliveries(client, tenant, endpoint)] == ["new"]


def test_a_round_with_nothing_due_claims_nothing_however_many_endpoints(
    app, client, tenant, receiver
):
    """Idle rounds run every WEBHOOK_POLL_MS on every node: one read, no write per endpoint."""
    from sqlalchemy import event as sa_event

    for _ in range(15):
        add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t"})
    deliver(app)
    statements = []
    with app.app_context():
        engine = db.engine

    def seen(_conn, _cursor, statement, *_):
        statements.append(statement.split()[0].upper())

    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        assert deliver(app) == 0
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
    assert "UPDATE" not in statements and len(statements) <= 2, statements


def test_failed_statements_keep_their_values_out_of_messages_and_logs(app):
    """A webhook secret in an insert that fails (here: its tenant is gone) is not logged."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    row = {
        "public_id": "wh_x",
        "tenant_id": 2_000_000_000,
        "url": "https://example.com/",
        "types": [],
        "description": "",
        "enabled": True,
        "secret": "whsec_mustnotleak",
        "created_at": datetime.now(UTC),
    }
    with (
        app.app_context(),
        pytest.raises(IntegrityError) as failed,
        db.engine.begin() as connection,
    ):
        connection.execute(insert(WebhookEndpoint.__table__).values(**row))
    assert "whsec_mustnotleak" not in str(failed.value)


def test_an_endpoint_for_a_tenant_removed_meanwhile_is_refused_not_an_error(
    app, client, tenant, receiver
):
    client.get("/api/v1/webhooks", headers=tenant["headers"])  # its credentials are cached
    with app.app_context():
        db.session.execute(text("DELETE FROM tenants"))
        db.session.commit()
    response = client.post(
        "/api/v1/webhooks", json={"url": receiver.url}, headers=tenant["headers"]
    )
    assert response.status_code == 401


def test_deleting_an_endpoint_removes_its_deliveries_in_batches(
    app, client, tenant, receiver, monkeypatch
):
    from sqlalchemy import event as sa_event

    from ingest.services import webhooks as service

    monkeypatch.setattr(service, "DELETE_BATCH", 3)
    endpoint = add_endpoint(client, tenant, receiver.url)
    kept = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, *({"type": "t"} for _ in range(10)))
    with app.app_context():
        engine = db.engine
    deletes = []

    def seen(_conn, _cursor, statement, *_):
        if statement.startswith("DELETE FROM webhook_deliveries"):
            deletes.append(statement)

    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        deleting = client.delete(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant["headers"])
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
    assert deleting.status_code == 204
    assert len(deletes) == 4  # 3 + 3 + 3 + 1: no transaction holds more than a batch
    with app.app_context():
        left = db.session.execute(select(WebhookDelivery.endpoint_id)).scalars().all()
        endpoints = db.session.execute(select(WebhookEndpoint.public_id)).scalars().all()
    assert endpoints == [kept["id"]] and len(left) == 10


def test_a_delivery_in_flight_shows_no_next_attempt(app, client, tenant, receiver):
    """Its stored next_attempt_at is the worker's lease, not a time anything is due."""
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t"})
    [queued] = deliveries(client, tenant, endpoint)
    assert queued["next_attempt_at"] is not None
    app.extensions["webhook_worker"].claim_round()
    [claimed] = deliveries(client, tenant, endpoint)
    assert (claimed["status"], claimed["attempts"], claimed["next_attempt_at"]) == (
        "pending",
        0,
        None,
    )


def test_the_admin_is_told_webhooks_belong_to_a_tenant(client):
    response = client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 403
    assert "webhooks belong to a tenant" in response.get_json()["error"]["message"]


def test_a_refusal_does_not_say_what_a_name_resolves_to(make_app):
    """Answers must not map the internal network for whoever asks."""
    client = make_app().test_client()
    tenant = create_tenant(client, "acme")
    response = client.post(
        "/api/v1/webhooks", json={"url": "http://localhost/"}, headers=tenant["headers"]
    )
    assert response.status_code == 400
    assert "127.0.0.1" not in str(response.get_json()) and "::1" not in str(response.get_json())


@pytest.mark.parametrize("endpoint_id", ["%00", "wh_%00", "wh_a%00b", "x" * 40, "wh_ab%20cd"])
def test_ids_that_cannot_be_endpoints_are_not_found(client, tenant, endpoint_id):
    response = client.get(f"/api/v1/webhooks/{endpoint_id}", headers=tenant["headers"])
    assert response.status_code == 404, response.get_json()


def test_an_overlong_error_is_clipped_to_fit(app, client, tenant, receiver):
    """A receiver's host name is the tenant's to choose, and ends up in the error."""
    from ingest.deliveries.sender import Outcome
    from ingest.deliveries.store import Result

    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t"})
    worker = app.extensions["webhook_worker"]
    [(_target, [claimed])] = worker.claim_round()
    worker.record([Result(claimed, Outcome(error="x" * 2000))])
    [delivery] = deliveries(client, tenant, endpoint)
    assert delivery["attempts"] == 1 and delivery["last_error"] == "x" * 500


def test_an_endpoint_deleted_while_it_is_changed_is_not_found(
    app, client, tenant, receiver, monkeypatch
):
    from ingest.services import webhooks as service

    endpoint = add_endpoint(client, tenant, receiver.url)

    def deleted_meanwhile(url):
        with app.app_context(), db.engine.begin() as connection:
            connection.execute(text("DELETE FROM webhook_endpoints"))

    monkeypatch.setattr(service, "_check_url", deleted_meanwhile)
    response = client.patch(
        f"/api/v1/webhooks/{endpoint['id']}", json={"url": receiver.url}, headers=tenant["headers"]
    )
    assert response.status_code == 404, response.get_json()


def test_concurrent_rotations_each_answer_a_secret_that_was_stored(make_app, receiver):
    app = make_app(**QUICK)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    endpoint = add_endpoint(client, tenant, receiver.url)
    answers = []

    def rotate():
        response = app.test_client().post(
            f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", headers=tenant["headers"]
        )
        answers.append(response.get_json()["secret"])

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with app.app_context():
        stored = db.session.execute(
            select(WebhookEndpoint.secret, WebhookEndpoint.previous_secret)
        ).one()
    assert len(set(answers)) == 6
    assert stored.secret in answers and stored.previous_secret in answers


def test_a_replay_waits_for_a_large_backlog_to_be_sent(app, client, tenant, receiver, monkeypatch):
    from ingest.services import webhooks as service

    monkeypatch.setattr(service, "REPLAY_WHEN_PENDING_BELOW", 3)
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t"}, {"type": "t"})
    path = f"/api/v1/webhooks/{endpoint['id']}/replay"
    since = {"since": "2000-01-01T00:00:00Z"}
    assert client.post(path, json=since, headers=tenant["headers"]).get_json() == {"queued": 2}
    refused = client.post(path, json=since, headers=tenant["headers"])
    assert refused.status_code == 409 and "pending" in refused.get_json()["error"]["message"]
    deliver(app)
    assert client.post(path, json=since, headers=tenant["headers"]).status_code == 202


def test_a_response_with_a_huge_head_is_a_failure_read_no_further(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.extra_headers = {f"X-Fat-{n}": "x" * 60_000 for n in range(90)}
    post_events(client, tenant, {"type": "t"})
    deliver(app)
    [delivery] = deliveries(client, tenant, endpoint)
    assert delivery["status"] == "pending" and delivery["last_status_code"] is None
    assert "head is longer than 16 KiB" in delivery["last_error"]


def test_a_tenant_with_many_endpoints_gets_a_tenants_share_of_the_claims(make_app, receiver):
    app = make_app(**QUICK, WEBHOOK_CONCURRENCY=1)  # 4 per endpoint, 8 per tenant
    client = app.test_client()
    many, one = create_tenant(client, "many"), create_tenant(client, "one")
    for _ in range(3):
        add_endpoint(client, many, receiver.url)
    add_endpoint(client, one, receiver.url)
    post_events(client, many, *({"type": "t"} for _ in range(10)))
    post_events(client, one, *({"type": "t"} for _ in range(10)))
    claimed = app.extensions["webhook_worker"].claim_round()
    by_tenant = {}
    for target, deliveries_claimed in claimed:
        by_tenant[target.tenant_id] = by_tenant.get(target.tenant_id, 0) + len(deliveries_claimed)
    assert by_tenant == {many["id"]: 8, one["id"]: 4}


def test_claimed_deliveries_follow_a_url_change_and_stop_when_disabled(make_app, receiver):
    app = make_app(**QUICK, WEBHOOK_CONCURRENCY=1, WEBHOOK_POLL_MS=20)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    moved = Receiver()
    worker = app.extensions["webhook_worker"]
    try:
        endpoint = add_endpoint(client, tenant, receiver.url)
        path = f"/api/v1/webhooks/{endpoint['id']}"
        receiver.gate.clear()  # the first attempt hangs; three more wait behind it
        post_events(client, tenant, *({"type": "t", "id": f"e{n}"} for n in range(4)))
        worker.start()
        receiver.wait_for(1)
        client.patch(path, json={"url": moved.url}, headers=tenant["headers"])
        time.sleep(1)  # many polls: the worker reads the endpoint again
        receiver.gate.set()
        moved.wait_for(3)
        assert len(receiver.requests) == 1

        moved.gate.clear()
        post_events(client, tenant, *({"type": "t", "id": f"f{n}"} for n in range(4)))
        moved.wait_for(4)
        client.patch(path, json={"enabled": False}, headers=tenant["headers"])
        time.sleep(1)
        moved.gate.set()
        time.sleep(0.3)
        assert len(moved.requests) == 4  # the one in flight, none of those waiting
    finally:
        worker.stop()
        receiver.gate.set()
        moved.gate.set()
        moved.close()


def test_pruning_keeps_the_retention_period_and_every_pending_delivery(make_app, receiver):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_SCHEDULE=(3600.0,))
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    endpoint = add_endpoint(client, tenant, receiver.url)
    receiver.answers.extend([200, 410])
    post_events(client, tenant, {"type": "t", "id": "old-ok"})
    deliver(app)
    post_events(client, tenant, {"type": "t", "id": "old-gone"})
    deliver(app)  # 410: failed, and the endpoint disabled
    client.patch(
        f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": True}, headers=tenant["headers"]
    )
    receiver.status = 500
    post_events(client, tenant, {"type": "t", "id": "old-pending"})
    deliver(app)
    receiver.status = 200
    post_events(client, tenant, {"type": "t", "id": "recent"})
    deliver(app)
    with app.app_context():
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.event_id != "recent")
            .values(created_at=datetime.now(UTC) - timedelta(days=40))
        )
        db.session.commit()
    assert app.extensions["webhook_worker"].prune() == 2
    kept = {d["event_id"]: d["status"] for d in deliveries(client, tenant, endpoint)}
    assert kept == {"old-pending": "pending", "recent": "succeeded"}


def test_delivery_ids_are_never_reused(app, client, tenant, receiver):
    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t"})
    [first] = deliveries(client, tenant, endpoint)
    client.delete(f"/api/v1/webhooks/{endpoint['id']}", headers=tenant["headers"])
    again = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t"})
    [second] = deliveries(client, tenant, again)
    assert int(second["id"].removeprefix("dlv_")) > int(first["id"].removeprefix("dlv_"))


def test_a_claim_round_that_fails_holds_nothing_back(app, client, tenant, receiver, monkeypatch):
    """A database blip mid-round must not leave the endpoint's room taken for good."""
    from sqlalchemy.exc import OperationalError

    from ingest.deliveries import store

    add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, *({"type": "t"} for _ in range(50)))
    worker = app.extensions["webhook_worker"]

    def blip(connection, claimed):
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    with monkeypatch.context() as patched:
        patched.setattr(store, "attach_bodies", blip)
        with pytest.raises(OperationalError):
            worker.claim_round()
    assert deliver(app) == worker.claim_size  # the whole claim, as if the blip never was


def test_an_outcome_that_cannot_be_written_does_not_hold_up_the_others(
    app, client, tenant, receiver
):
    """One poisoned outcome in a batch: the others are written, it is left to its lease."""
    from ingest.deliveries.sender import Outcome
    from ingest.deliveries.store import Result

    endpoint = add_endpoint(client, tenant, receiver.url)
    post_events(client, tenant, {"type": "t", "id": "bad"}, {"type": "t", "id": "good"})
    worker = app.extensions["webhook_worker"]
    [(_target, claimed)] = worker.claim_round()
    by_id = {delivery.event_id: delivery for delivery in claimed}
    worker.record(
        [
            Result(by_id["bad"], Outcome(status_code=2**70)),  # no database stores this
            Result(by_id["good"], Outcome(status_code=200)),
        ]
    )
    shown = {d["event_id"]: d for d in deliveries(client, tenant, endpoint)}
    assert shown["good"]["status"] == "succeeded"
    assert (shown["bad"]["status"], shown["bad"]["attempts"]) == ("pending", 0)
