"""Tenant and key lifecycle over the API: rotation with grace, revocation, changes,
disabling, deletion with its purge, retention. The clock moves with time-machine."""

import io
import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select, update

from ingest import realtime
from ingest.deliveries import store
from ingest.extensions import db, socketio
from ingest.models import ApiKey, Event, WebhookDelivery
from ingest.services.purge import run_purge
from tests.support import create_tenant, post_events


def _keys(client, tenant, headers=None) -> list[dict]:
    response = client.get(
        f"/api/v1/tenants/{tenant['id']}/keys", headers=headers or tenant["headers"]
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def _rotate(client, tenant, headers=None, **body):
    return client.post(
        f"/api/v1/tenants/{tenant['id']}/keys",
        json=body or None,
        headers=headers or tenant["headers"],
    )


def _events_status(client, key: str) -> int:
    return client.get("/api/v1/events", headers={"X-API-Key": key}).status_code


def new_headers(created: dict) -> dict:
    return {"headers": {"X-API-Key": created["api_key"]}}


def _error(response) -> str:
    return response.get_json()["error"]["code"]


def _patch(client, admin_headers, tenant, **fields):
    return client.patch(f"/api/v1/tenants/{tenant['id']}", json=fields, headers=admin_headers)


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- keys ------------------------------------------------------------------------------------


def test_a_new_tenant_has_one_key_listed_without_the_key(client, tenant):
    [key] = _keys(client, tenant)
    assert set(key) == {"prefix", "created_at", "last_used_at", "expires_at", "revoked", "status"}
    assert key["status"] == "active"
    assert tenant["api_key"].startswith(key["prefix"]) and key["prefix"] == tenant["api_key_prefix"]
    assert (key["expires_at"], key["revoked"], key["last_used_at"]) == (None, False, None)


def test_a_rotated_key_works_during_its_grace_and_is_refused_after(client, tenant):
    response = _rotate(client, tenant, grace_seconds=3600)
    assert response.status_code == 201
    new = response.get_json()
    assert set(new) == {
        "api_key",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked",
        "status",
    }
    assert new["api_key"].startswith(new["prefix"]) and new["expires_at"] is None
    old_key = tenant["api_key"]
    old = next(k for k in _keys(client, tenant) if k["prefix"] == tenant["api_key_prefix"])
    expires = datetime.fromisoformat(old["expires_at"])
    assert abs((expires - _in(3600)).total_seconds()) < 60

    assert _events_status(client, old_key) == 200  # cached now, too
    with time_machine.travel(_in(3599), tick=False):
        assert _events_status(client, old_key) == 200
    assert old["status"] == "expiring"
    with time_machine.travel(_in(3601), tick=False):
        response = client.get("/api/v1/events", headers={"X-API-Key": old_key})
        assert (response.status_code, _error(response)) == (401, "authentication_failed")
        assert _events_status(client, new["api_key"]) == 200
        statuses = {k["prefix"]: k["status"] for k in _keys(client, {**tenant, **new_headers(new)})}
        assert statuses == {old["prefix"]: "expired", new["prefix"]: "active"}


def test_grace_zero_refuses_the_other_keys_at_once(client, tenant):
    assert _events_status(client, tenant["api_key"]) == 200
    new = _rotate(client, tenant, grace_seconds=0).get_json()
    assert _events_status(client, tenant["api_key"]) == 401
    assert _events_status(client, new["api_key"]) == 200


def test_rotating_without_a_body_uses_the_configured_grace(make_app, admin_headers):
    app = make_app(KEY_ROTATION_GRACE_S=120)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    assert _rotate(client, tenant, headers=admin_headers).status_code == 201
    old = next(k for k in _keys(client, tenant) if k["prefix"] == tenant["api_key_prefix"])
    assert abs((datetime.fromisoformat(old["expires_at"]) - _in(120)).total_seconds()) < 30


def test_rotation_never_extends_a_sooner_expiry(client, tenant):
    _rotate(client, tenant, grace_seconds=60)
    _rotate(client, tenant, headers=tenant["headers"], grace_seconds=86400)
    first = next(k for k in _keys(client, tenant) if k["prefix"] == tenant["api_key_prefix"])
    assert datetime.fromisoformat(first["expires_at"]) < _in(120)


@pytest.mark.parametrize("grace", [-1, "60", 1.5, True, 366 * 86400])
def test_a_bad_grace_is_a_validation_error(client, tenant, grace):
    response = _rotate(client, tenant, grace_seconds=grace)
    assert (response.status_code, _error(response)) == (400, "validation_error")
    assert len(_keys(client, tenant)) == 1


def test_keys_of_another_tenant_are_not_found_and_tokens_cannot_mint_keys(
    client, tenant, other_tenant
):
    for response in (
        _rotate(client, other_tenant, headers=tenant["headers"]),
        client.get(f"/api/v1/tenants/{other_tenant['id']}/keys", headers=tenant["headers"]),
        client.delete(
            f"/api/v1/tenants/{other_tenant['id']}/keys/{other_tenant['api_key_prefix']}",
            headers=tenant["headers"],
        ),
    ):
        assert (response.status_code, _error(response)) == (404, "not_found")
    assert _events_status(client, other_tenant["api_key"]) == 200
    token = client.post(f"/api/v1/tenants/{tenant['id']}/token", headers=tenant["headers"])
    bearer = {"Authorization": f"Bearer {token.get_json()['token']}"}
    response = _rotate(client, tenant, headers=bearer)
    assert (response.status_code, _error(response)) == (403, "forbidden")
    url = f"/api/v1/tenants/{tenant['id']}/keys/{tenant['api_key_prefix']}"
    response = client.delete(url, headers=bearer)
    assert (response.status_code, _error(response)) == (403, "forbidden")
    assert len(_keys(client, tenant, headers=bearer)) == 1  # a token may read them


def test_a_revoked_key_is_refused_at_once_even_when_cached(client, tenant):
    second = _rotate(client, tenant, grace_seconds=86400).get_json()
    assert _events_status(client, tenant["api_key"]) == 200  # in the credential cache
    url = f"/api/v1/tenants/{tenant['id']}/keys/{tenant['api_key_prefix']}"
    response = client.delete(url, headers={"X-API-Key": second["api_key"]})
    assert response.status_code == 204
    assert _events_status(client, tenant["api_key"]) == 401
    assert _events_status(client, second["api_key"]) == 200
    revoked = next(
        k
        for k in _keys(client, {**tenant, "headers": {"X-API-Key": second["api_key"]}})
        if k["prefix"] == tenant["api_key_prefix"]
    )
    assert (revoked["revoked"], revoked["status"]) == (True, "revoked")
    # Revoking again is harmless; an unknown prefix is not found.
    assert client.delete(url, headers={"X-API-Key": second["api_key"]}).status_code == 204
    missing = client.delete(f"{url[:-12]}ik_000000000", headers={"X-API-Key": second["api_key"]})
    assert (missing.status_code, _error(missing)) == (404, "not_found")


def test_last_used_at_is_written_in_batches_not_per_request(app, client, tenant):
    assert _events_status(client, tenant["api_key"]) == 200
    assert _keys(client, tenant)[0]["last_used_at"] is None  # not yet flushed
    with app.app_context():
        assert app.extensions["key_usage"].flush() == 1
    used = datetime.fromisoformat(_keys(client, tenant)[0]["last_used_at"])
    assert abs((used - datetime.now(UTC)).total_seconds()) < 60
    with app.app_context():
        assert app.extensions["key_usage"].flush() == 1  # the listing itself used the key
        assert app.extensions["key_usage"].flush() == 0


# --- changes and disabling -------------------------------------------------------------------


def test_patch_changes_each_field_and_reports_them(client, admin_headers, tenant):
    response = _patch(client, admin_headers, tenant, name="Acme 2", rate_limit=10, retention_days=7)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["rate_limit"], body["retention_days"]) == ("Acme 2", 10, 7)
    body = _patch(client, admin_headers, tenant, rate_limit=None, retention_days=None).get_json()
    assert (body["rate_limit"], body["retention_days"], body["status"]) == (None, None, "active")


@pytest.mark.parametrize(
    "fields",
    [{}, {"retention_days": 0}, {"disabled": "yes"}, {"rate_limit": 0}, {"name": ""}, {"x": 1}],
)
def test_a_bad_patch_is_a_validation_error(client, admin_headers, tenant, fields):
    response = _patch(client, admin_headers, tenant, **fields)
    assert (response.status_code, _error(response)) == (400, "validation_error")


def test_patch_is_for_the_admin_and_names_stay_unique(client, admin_headers, tenant, other_tenant):
    response = client.patch(
        f"/api/v1/tenants/{tenant['id']}", json={"rate_limit": 1}, headers=tenant["headers"]
    )
    assert (response.status_code, _error(response)) == (403, "forbidden")
    response = _patch(client, admin_headers, tenant, name="GLOBEX")
    assert (response.status_code, _error(response)) == (409, "conflict")


def test_a_lower_rate_limit_applies_at_once(client, admin_headers, tenant):
    event = {"type": "t", "metadata": {}}
    assert client.post("/api/v1/events", json=event, headers=tenant["headers"]).status_code == 201
    _patch(client, admin_headers, tenant, rate_limit=1)
    codes = [
        client.post("/api/v1/events", json=event, headers=tenant["headers"]).status_code
        for _ in range(2)
    ]
    assert 429 in codes


def test_a_disabled_tenants_credentials_get_403_and_enabling_restores_them(
    client, admin_headers, tenant, other_tenant
):
    token = client.post(f"/api/v1/tenants/{tenant['id']}/token", headers=tenant["headers"])
    bearer = {"Authorization": f"Bearer {token.get_json()['token']}"}
    assert _events_status(client, tenant["api_key"]) == 200  # cached
    assert _patch(client, admin_headers, tenant, disabled=True).get_json()["status"] == "disabled"
    for method, url in (
        ("get", "/api/v1/events"),
        ("post", "/api/v1/events"),
        ("get", "/api/v1/tenants/me"),
        ("get", "/api/v1/webhooks"),
        ("get", f"/api/v1/tenants/{tenant['id']}/keys"),
    ):
        for headers in (tenant["headers"], bearer):
            response = getattr(client, method)(url, json={"type": "t"}, headers=headers)
            assert (response.status_code, _error(response)) == (403, "tenant_disabled"), url
    assert _events_status(client, other_tenant["api_key"]) == 200
    assert _patch(client, admin_headers, tenant, disabled=False).get_json()["status"] == "active"
    assert _events_status(client, tenant["api_key"]) == 200
    assert client.get("/api/v1/events", headers=bearer).status_code == 200


def test_a_disabled_tenant_is_not_an_authentication_failure(make_app, admin_headers):
    app = make_app(AUTH_FAILURE_RATE_LIMIT="2/minute")
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    _patch(client, admin_headers, tenant, disabled=True)
    for _ in range(4):
        assert _events_status(client, tenant["api_key"]) == 403
    _patch(client, admin_headers, tenant, disabled=False)
    assert _events_status(client, tenant["api_key"]) == 200


def test_a_disabled_tenants_webhooks_wait_and_go_out_when_enabled(
    app, client, admin_headers, tenant
):
    created = client.post(
        "/api/v1/webhooks", json={"url": "https://example.com/hook"}, headers=tenant["headers"]
    )
    assert created.status_code == 201, created.get_json()
    post_events(client, tenant, {"type": "t"})

    def due() -> list[int]:
        with app.app_context(), db.engine.connect() as connection:
            return [t.tenant_id for t in store.due_endpoints(connection, _in(1))]

    assert due() == [tenant["id"]]
    _patch(client, admin_headers, tenant, disabled=True)
    assert due() == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
    _patch(client, admin_headers, tenant, disabled=False)
    assert due() == [tenant["id"]]


# --- sockets ---------------------------------------------------------------------------------


def _socket(app, client, **auth):
    return socketio.test_client(app, auth=auth, flask_test_client=client)


def test_sockets_of_a_revoked_key_or_disabled_tenant_are_dropped(
    app, client, admin_headers, tenant, other_tenant
):
    """What they are told first is tested on a live server (tests/e2e/test_lifecycle_e2e.py)."""
    second = _rotate(client, tenant, grace_seconds=86400).get_json()
    by_old = _socket(app, client, api_key=tenant["api_key"])
    by_new = _socket(app, client, api_key=second["api_key"])
    bystander = _socket(app, client, api_key=other_tenant["api_key"])
    client.delete(
        f"/api/v1/tenants/{tenant['id']}/keys/{tenant['api_key_prefix']}", headers=admin_headers
    )
    with app.app_context():
        realtime.disconnect_refused(datetime.now(UTC))
    assert not by_old.is_connected()
    assert by_new.is_connected() and bystander.is_connected()

    _patch(client, admin_headers, tenant, disabled=True)
    with app.app_context():
        realtime.disconnect_refused(datetime.now(UTC))
    assert not by_new.is_connected()
    assert not _socket(app, client, api_key=second["api_key"]).is_connected()
    assert bystander.is_connected()
    bystander.disconnect()


def test_a_socket_whose_key_expires_is_dropped(app, client, tenant):
    socket = _socket(app, client, api_key=tenant["api_key"])
    _rotate(client, tenant, grace_seconds=60)
    with app.app_context():
        realtime.disconnect_refused(datetime.now(UTC))
        assert socket.is_connected()
        realtime.disconnect_refused(_in(61))
    assert not socket.is_connected()


# --- deletion --------------------------------------------------------------------------------


def test_delete_refuses_at_once_frees_the_name_purges_then_404(
    app, client, admin_headers, tenant, other_tenant
):
    post_events(client, tenant, *({"type": "t"} for _ in range(5)))
    post_events(client, other_tenant, {"type": "kept"})
    token = client.post(f"/api/v1/tenants/{tenant['id']}/token", headers=tenant["headers"])
    bearer = {"Authorization": f"Bearer {token.get_json()['token']}"}
    assert _events_status(client, tenant["api_key"]) == 200  # cached

    response = client.delete(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    assert (response.status_code, response.get_json()) == (202, {"status": "deleting"})
    assert _events_status(client, tenant["api_key"]) == 401
    assert client.get("/api/v1/events", headers=bearer).status_code == 401
    shown = client.get(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    assert (shown.status_code, shown.get_json()["status"]) == (200, "deleting")
    again = create_tenant(client, "acme")  # the name is free at once
    assert again["id"] != tenant["id"]
    changed = _patch(client, admin_headers, tenant, disabled=True)
    assert (changed.status_code, _error(changed)) == (409, "conflict")

    with app.app_context():
        report = run_purge()
    assert report.tenants_removed == [tenant["id"]] and report.events_removed == 5
    gone = client.get(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    assert (gone.status_code, _error(gone)) == (404, "not_found")
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(Event.tenant_id == tenant["id"])) == 0
        assert db.session.scalar(select(func.count()).where(ApiKey.tenant_id == tenant["id"])) == 0
    assert client.get("/api/v1/events", headers=other_tenant["headers"]).get_json()["data"]
    assert (
        client.delete(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers).status_code == 404
    )


def test_ids_are_never_reused_and_an_old_jwt_never_reaches_a_new_tenant(app, client, admin_headers):
    newest = create_tenant(client, "newest")
    token = client.post(f"/api/v1/tenants/{newest['id']}/token", headers=newest["headers"])
    bearer = {"Authorization": f"Bearer {token.get_json()['token']}"}
    client.delete(f"/api/v1/tenants/{newest['id']}", headers=admin_headers)
    with app.app_context():
        run_purge()
    successor = create_tenant(client, "newest")
    assert successor["id"] > newest["id"]
    response = client.get("/api/v1/tenants/me", headers=bearer)
    assert (response.status_code, _error(response)) == (401, "authentication_failed")


def test_the_purge_works_in_bounded_batches(make_app, admin_headers):
    app = make_app(PURGE_BATCH=3)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    post_events(client, tenant, *({"type": "t"} for _ in range(10)))
    client.delete(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    statements = []
    with app.app_context():
        from sqlalchemy import event as sa_event

        sa_event.listen(
            db.engine,
            "before_cursor_execute",
            lambda *args: (
                statements.append(args[2]) if args[2].startswith("DELETE FROM events") else None
            ),
        )
        assert run_purge().events_removed == 10
    assert len(statements) == 4  # 3 + 3 + 3 + 1


# --- retention -------------------------------------------------------------------------------


def _age_events(app, tenant, days: float, count: int) -> None:
    """Make the tenant's ``count`` oldest events ``days`` old (received then)."""
    with app.app_context():
        oldest = select(Event.seq).where(Event.tenant_id == tenant["id"]).order_by(Event.seq)
        seqs = list(db.session.scalars(oldest.limit(count)))
        db.session.execute(
            update(Event)
            .where(Event.seq.in_(seqs))
            .values(received_at=datetime.now(UTC) - timedelta(days=days))
        )
        db.session.commit()


def _total(client, tenant) -> int:
    return client.get("/api/v1/events/stats", headers=tenant["headers"]).get_json()["total"]


def test_retention_purges_only_old_events_and_stats_follow(
    app, client, admin_headers, tenant, other_tenant
):
    post_events(client, tenant, *({"type": "t", "id": f"e{i}"} for i in range(6)))
    post_events(client, other_tenant, *({"type": "t"} for _ in range(3)))
    _age_events(app, tenant, days=10, count=4)
    _age_events(app, other_tenant, days=10, count=3)
    _patch(client, admin_headers, tenant, retention_days=7)
    with app.app_context():
        assert run_purge().events_removed == 4
    ids = [
        e["id"] for e in client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"]
    ]
    assert sorted(ids) == ["e4", "e5"] and _total(client, tenant) == 2
    assert _total(client, other_tenant) == 3  # keeps everything: no retention


def test_the_default_retention_applies_where_a_tenant_sets_none(make_app, admin_headers):
    app = make_app(DEFAULT_RETENTION_DAYS=30, PURGE_BATCH=2)
    client = app.test_client()
    keeps_longer = create_tenant(
        client,
        "a",
    )
    default = create_tenant(client, "b")
    for tenant in (keeps_longer, default):
        post_events(client, tenant, *({"type": "t"} for _ in range(5)))
        _age_events(app, tenant, days=40, count=3)
    _patch(client, admin_headers, keeps_longer, retention_days=60)
    with app.app_context():
        assert run_purge().events_removed == 3
    assert (_total(client, keeps_longer), _total(client, default)) == (5, 2)


def test_tenant_json_has_the_lifecycle_fields(client, admin_headers, tenant):
    listed = client.get("/api/v1/tenants", headers=admin_headers).get_json()["data"]
    assert {"disabled", "retention_days", "status"} <= set(listed[0])
    assert "api_key_prefix" not in listed[0]


def test_tokens_minted_with_a_key_die_with_it_and_the_admins_do_not(client, admin_headers, tenant):
    def bearer(headers) -> dict:
        token = client.post(f"/api/v1/tenants/{tenant['id']}/token", headers=headers)
        return {"Authorization": f"Bearer {token.get_json()['token']}"}

    with_key, with_admin = bearer(tenant["headers"]), bearer(admin_headers)
    assert client.get("/api/v1/events", headers=with_key).status_code == 200  # cached
    _rotate(client, tenant, headers=admin_headers, grace_seconds=600)
    with time_machine.travel(_in(601), tick=False):
        assert client.get("/api/v1/events", headers=with_key).status_code == 401
        assert client.get("/api/v1/events", headers=with_admin).status_code == 200
    client.delete(
        f"/api/v1/tenants/{tenant['id']}/keys/{tenant['api_key_prefix']}", headers=admin_headers
    )
    response = client.get("/api/v1/events", headers=with_key)
    assert (response.status_code, _error(response)) == (401, "authentication_failed")
    assert client.get("/api/v1/events", headers=with_admin).status_code == 200


def test_a_whole_key_in_place_of_a_prefix_is_refused_and_never_logged(
    client, admin_headers, tenant, caplog
):
    url = f"/api/v1/tenants/{tenant['id']}/keys/{tenant['api_key']}"
    with caplog.at_level(logging.INFO, logger="ingest.access"):
        response = client.delete(url, headers=admin_headers)
    assert (response.status_code, _error(response)) == (400, "validation_error")
    assert "revoke it" in response.get_json()["error"]["message"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert tenant["api_key"] not in logged and tenant["api_key"][:12] in logged
    assert _keys(client, tenant)[0]["revoked"] is False


class _HeldBody(io.RawIOBase):
    """A request body held back until ``meanwhile()`` has run (in a thread of its own, as
    another client's request would): a client sending its body slowly, on purpose."""

    def __init__(self, body: bytes, meanwhile):
        self._body, self._meanwhile = io.BytesIO(body), meanwhile

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._body.seek(offset, whence)

    def readinto(self, buffer) -> int:
        if self._meanwhile is not None:
            thread = threading.Thread(target=self._meanwhile)
            thread.start()
            thread.join()
            self._meanwhile = None
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _held(client, url: str, headers: dict, body: dict, meanwhile):
    data = json.dumps(body).encode()
    return client.post(
        url,
        input_stream=_HeldBody(data, meanwhile),
        content_length=len(data),
        content_type="application/json",
        headers=headers,
    )


def test_a_request_whose_body_comes_after_its_key_is_revoked_writes_nothing(
    app, client, admin_headers, tenant
):
    def revoke():
        revoked = app.test_client().delete(
            f"/api/v1/tenants/{tenant['id']}/keys/{tenant['api_key_prefix']}",
            headers=admin_headers,
        )
        assert revoked.status_code == 204

    url = f"/api/v1/tenants/{tenant['id']}/keys"
    response = _held(client, url, tenant["headers"], {"grace_seconds": 0}, revoke)
    assert (response.status_code, _error(response)) == (401, "authentication_failed")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 1


def test_events_whose_body_comes_after_the_tenant_is_disabled_are_not_stored(
    app, client, admin_headers, tenant
):
    def disable():
        app.test_client().patch(
            f"/api/v1/tenants/{tenant['id']}", json={"disabled": True}, headers=admin_headers
        )

    for url, body in (
        ("/api/v1/events", {"type": "t"}),
        ("/api/v1/events/batch", {"events": [{"type": "t"}]}),
    ):
        _patch(client, admin_headers, tenant, disabled=False)
        response = _held(client, url, tenant["headers"], body, disable)
        assert (response.status_code, _error(response)) == (403, "tenant_disabled")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_a_key_in_its_grace_sends_events_but_cannot_manage_keys(client, tenant):
    new = _rotate(client, tenant, grace_seconds=3600).get_json()
    assert _events_status(client, tenant["api_key"]) == 200
    for response in (
        _rotate(client, tenant, grace_seconds=0),
        client.delete(
            f"/api/v1/tenants/{tenant['id']}/keys/{new['prefix']}", headers=tenant["headers"]
        ),
    ):
        assert (response.status_code, _error(response)) == (403, "forbidden")
    assert _events_status(client, new["api_key"]) == 200


def test_a_tenant_holds_a_bounded_number_of_usable_keys(make_app):
    app = make_app(MAX_KEYS_PER_TENANT=2)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    second = _rotate(client, tenant, grace_seconds=3600).get_json()
    headers = {"X-API-Key": second["api_key"]}
    response = _rotate(client, tenant, headers=headers, grace_seconds=3600)
    assert (response.status_code, _error(response)) == (409, "conflict")
    assert len(_keys(client, tenant, headers=headers)) == 2
    assert _rotate(client, tenant, headers=headers, grace_seconds=0).status_code == 201


def test_key_changes_are_rate_limited_per_tenant_but_not_for_the_admin(make_app, admin_headers):
    app = make_app(TENANT_KEY_CHANGES_LIMIT="2/hour")
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    headers = tenant["headers"]
    for _ in range(2):
        created = _rotate(client, tenant, headers=headers, grace_seconds=0)
        assert created.status_code == 201
        headers = {"X-API-Key": created.get_json()["api_key"]}
    response = _rotate(client, tenant, headers=headers, grace_seconds=0)
    assert (response.status_code, _error(response)) == (429, "rate_limited")
    assert _rotate(client, tenant, headers=admin_headers, grace_seconds=0).status_code == 201


def test_the_key_list_keeps_every_usable_key_and_the_latest_inactive_ones(
    client, admin_headers, tenant, monkeypatch
):
    from ingest.services import tenants as service

    monkeypatch.setattr(service, "INACTIVE_KEYS_LISTED", 2)
    made = [
        _rotate(client, tenant, headers=admin_headers, grace_seconds=0).get_json() for _ in range(4)
    ]
    listed = [key["prefix"] for key in _keys(client, tenant, headers=admin_headers)]
    assert listed == [made[1]["prefix"], made[2]["prefix"], made[3]["prefix"]]


@pytest.mark.parametrize("name", ["ß" * 60, "ﬃ" * 40])
def test_a_name_too_long_once_case_folded_is_a_validation_error(
    client, admin_headers, tenant, name
):
    response = client.post("/api/v1/tenants", json={"name": name}, headers=admin_headers)
    assert (response.status_code, _error(response)) == (400, "validation_error")
    response = _patch(client, admin_headers, tenant, name=name)
    assert (response.status_code, _error(response)) == (400, "validation_error")


@pytest.mark.parametrize("prefix", ["ik_%00", "ik_%C3%A9", "..", "%20"])
def test_a_prefix_no_key_can_have_is_not_found(client, tenant, prefix):
    url = f"/api/v1/tenants/{tenant['id']}/keys/{prefix}"
    response = client.delete(url, headers=tenant["headers"])
    assert (response.status_code, _error(response)) == (404, "not_found")


def test_the_purge_gives_its_sqlite_connection_back_as_it_found_it(
    make_app, admin_headers, tmp_path
):
    """On SQLite whatever the suite's backend: the settings are SQLite's own."""
    from flask_migrate import upgrade

    app = make_app(database_url=f"sqlite:///{tmp_path / 'purge.db'}", PURGE_BATCH=2)
    with app.app_context():
        upgrade()
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    post_events(client, tenant, *({"type": "t"} for _ in range(5)))
    client.delete(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    with app.app_context():
        assert run_purge().events_removed == 5
        with db.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


def test_a_held_rotation_by_a_key_that_went_into_its_grace_meanwhile_is_refused(
    app, client, admin_headers, tenant
):
    def rotated_by_the_owner():
        app.test_client().post(
            f"/api/v1/tenants/{tenant['id']}/keys",
            json={"grace_seconds": 3600},
            headers=admin_headers,
        )

    url = f"/api/v1/tenants/{tenant['id']}/keys"
    response = _held(client, url, tenant["headers"], {"grace_seconds": 0}, rotated_by_the_owner)
    assert (response.status_code, _error(response)) == (403, "forbidden")
    statuses = sorted(key["status"] for key in _keys(client, tenant, headers=admin_headers))
    assert statuses == ["active", "expiring"]  # the owner's new key is untouched


def test_a_rotation_whose_key_is_purged_right_after_its_commit_still_answers(
    app, client, admin_headers, tenant, monkeypatch
):
    """The purge of a tenant deleted meanwhile can remove the new row before the answer."""
    changes = app.extensions["credential_changes"]
    announce = changes.announce

    def purged_meanwhile(tenant_id):
        with db.engine.begin() as connection:
            connection.execute(ApiKey.__table__.delete().where(ApiKey.tenant_id == tenant_id))
        announce(tenant_id)

    monkeypatch.setattr(changes, "announce", purged_meanwhile)
    response = _rotate(client, tenant, headers=admin_headers, grace_seconds=0)
    assert response.status_code == 201
    assert response.get_json()["status"] == "active"


def test_keys_long_out_of_use_are_purged_and_recent_ones_kept(app, client, admin_headers, tenant):
    made = [
        _rotate(client, tenant, headers=admin_headers, grace_seconds=0).get_json() for _ in range(2)
    ]
    with app.app_context():
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == tenant["api_key_prefix"])
            .values(expires_at=datetime.now(UTC) - timedelta(days=91))
        )
        db.session.commit()
        run_purge()
    listed = [key["prefix"] for key in _keys(client, tenant, headers=admin_headers)]
    assert listed == [made[0]["prefix"], made[1]["prefix"]]


def test_a_key_in_its_grace_cannot_make_or_change_webhooks(client, admin_headers, tenant):
    created = client.post(
        "/api/v1/webhooks", json={"url": "https://example.com/a"}, headers=tenant["headers"]
    ).get_json()
    _rotate(client, tenant, headers=admin_headers, grace_seconds=3600)
    endpoint = f"/api/v1/webhooks/{created['id']}"
    for response in (
        client.post(
            "/api/v1/webhooks", json={"url": "https://example.com/b"}, headers=tenant["headers"]
        ),
        client.patch(endpoint, json={"url": "https://example.com/c"}, headers=tenant["headers"]),
        client.post(f"{endpoint}/rotate-secret", headers=tenant["headers"]),
    ):
        assert (response.status_code, _error(response)) == (403, "forbidden")
    listed = client.get("/api/v1/webhooks", headers=tenant["headers"]).get_json()["data"]
    assert [e["url"] for e in listed] == ["https://example.com/a"]
