"""Credentials: API keys, tenant JWTs, the admin token, failed-attempt limits."""

import time

import jwt

from tests.support import ADMIN_TOKEN, create_tenant

SECRET = "test-secret-key-that-is-long-enough-for-hs256"


def _token(client, tenant, headers=None):
    return client.post(
        f"/api/v1/tenants/{tenant['id']}/token", headers=headers or tenant["headers"]
    )


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_tenant_key_gets_a_token_that_works(client, tenant):
    response = _token(client, tenant)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], audience="ingest:tenant")
    assert claims["sub"] == str(tenant["id"])
    posted = client.post("/api/v1/events", json={"type": "t"}, headers=_bearer(body["token"]))
    assert posted.status_code == 201


def test_admin_gets_a_token_for_any_tenant(client, admin_headers, tenant):
    response = _token(client, tenant, headers=admin_headers)
    assert response.status_code == 200
    listed = client.get("/api/v1/events", headers=_bearer(response.get_json()["token"]))
    assert listed.status_code == 200


def test_tenant_cannot_get_a_token_for_another(client, tenant, other_tenant):
    response = _token(client, other_tenant, headers=tenant["headers"])
    assert response.status_code == 404


def test_a_token_cannot_mint_another(client, tenant):
    token = _token(client, tenant).get_json()["token"]
    assert _token(client, tenant, headers=_bearer(token)).status_code == 403


def test_expired_token_is_refused(client, tenant):
    now = int(time.time())
    claims = {"sub": str(tenant["id"]), "aud": "ingest:tenant", "iat": now - 100, "exp": now - 10}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    response = client.get("/api/v1/events", headers=_bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "authentication_failed"


def test_tampered_token_is_refused(client, tenant, other_tenant):
    token = _token(client, tenant).get_json()["token"]
    header, _payload, signature = token.split(".")
    forged_claims = jwt.decode(token, options={"verify_signature": False})
    forged_claims["sub"] = str(other_tenant["id"])
    forged = jwt.encode(forged_claims, "not-the-secret-" * 4, algorithm="HS256")
    forged_payload = forged.split(".")[1]
    for bad in (f"{header}.{forged_payload}.{signature}", forged, token[:-2] + "xx"):
        assert client.get("/api/v1/events", headers=_bearer(bad)).status_code == 401


def test_unsigned_token_is_refused(client, tenant):
    claims = {"sub": str(tenant["id"]), "aud": "ingest:tenant", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, None, algorithm="none")
    assert client.get("/api/v1/events", headers=_bearer(token)).status_code == 401


def test_token_for_a_tenant_that_does_not_exist_is_refused(client, tenant):
    now = int(time.time())
    claims = {"sub": "9999", "aud": "ingest:tenant", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert client.get("/api/v1/events", headers=_bearer(token)).status_code == 401


def test_wrong_or_missing_key_is_refused(client, tenant):
    for headers in ({}, {"X-API-Key": "ik_wrong"}, {"X-API-Key": tenant["api_key"] + "x"}):
        response = client.get("/api/v1/events", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "authentication_failed"


def test_admin_token_cannot_read_events(client, admin_headers):
    response = client.get("/api/v1/events", headers=admin_headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


def test_almost_right_admin_token_is_refused(client):
    response = client.get("/api/v1/tenants", headers=_bearer(ADMIN_TOKEN[:-1] + "X"))
    assert response.status_code == 401


def test_failed_attempts_are_limited_per_address(make_app):
    app = make_app(AUTH_FAILURE_RATE_LIMIT="3/minute")
    client = app.test_client()
    statuses = [
        client.get("/api/v1/events", headers={"X-API-Key": "ik_bad"}).status_code for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    locked = client.get("/api/v1/events", headers={"Authorization": "Bearer not-a-token"})
    assert locked.status_code == 429
    assert locked.get_json()["error"]["code"] == "rate_limited"
    assert int(locked.headers["Retry-After"]) >= 1
    other_address = client.get(
        "/api/v1/events", headers={"X-API-Key": "ik_bad"}, environ_base={"REMOTE_ADDR": "10.9.9.9"}
    )
    assert other_address.status_code == 401


def test_a_locked_out_address_still_gets_in_with_valid_credentials(make_app):
    """Only failures are limited: a client that mistyped a key can still use the right one."""
    app = make_app(AUTH_FAILURE_RATE_LIMIT="2/minute")
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    for _ in range(3):
        client.get("/api/v1/events", headers={"X-API-Key": "ik_bad"})
    assert client.get("/api/v1/events", headers={"X-API-Key": "ik_bad"}).status_code == 429
    assert client.get("/api/v1/events", headers=tenant["headers"]).status_code == 200
    admin = client.get("/api/v1/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 200
    assert client.get("/api/v1/events", headers={"X-API-Key": "ik_bad"}).status_code == 429


def test_verified_keys_are_cached_without_the_key(app, client, tenant):
    from sqlalchemy import event as sa_event

    from ingest.extensions import db

    client.get("/api/v1/events", headers=tenant["headers"])  # warms the cache
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        client.get("/api/v1/events", headers=tenant["headers"])
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    assert not any("FROM tenants" in sql for sql in statements), statements
    cache = app.extensions["credential_cache"]._entries
    assert tenant["api_key"] not in str(dict(cache))


def test_wrong_keys_are_never_cached(app, client, tenant):
    client.get("/api/v1/events", headers={"X-API-Key": "ik_wrong"})
    assert len(app.extensions["credential_cache"]._entries) == 0


def test_token_lives_at_least_as_long_as_announced(client, tenant):
    before = time.time()
    body = _token(client, tenant).get_json()
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], audience="ingest:tenant")
    assert claims["exp"] >= before + body["expires_in"]


def test_deployments_sharing_a_redis_count_failed_attempts_apart(make_app, shared_redis_url):
    """Each app here has its own RATELIMIT_KEY_PREFIX (conftest), as two deployments would."""
    settings = {"RATELIMIT_STORAGE_URI": shared_redis_url, "AUTH_FAILURE_RATE_LIMIT": "2/minute"}
    first, second = make_app(**settings).test_client(), make_app(**settings).test_client()
    bad = {"X-API-Key": "ik_bad"}
    statuses = [first.get("/api/v1/events", headers=bad).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert second.get("/api/v1/events", headers=bad).status_code == 401


def test_an_api_key_sent_as_a_bearer_token_is_told_where_it_goes(client, tenant):
    response = client.get("/api/v1/events", headers=_bearer(tenant["api_key"]))
    assert response.status_code == 401
    error = response.get_json()["error"]
    assert error["code"] == "authentication_failed"
    assert "X-API-Key" in error["message"]
