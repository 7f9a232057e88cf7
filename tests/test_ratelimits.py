"""Per-tenant limits counted in events, their headers, and isolation between tenants."""

from tests.support import create_tenant, post_events


def test_rate_limit_headers_on_tenant_responses(client, tenant):
    response = client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"])
    assert response.headers["X-RateLimit-Limit"] == "6000"
    assert response.headers["X-RateLimit-Remaining"] == "5999"
    assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert "Retry-After" not in response.headers


def test_a_batch_of_n_costs_n(client, tenant):
    response = post_events(client, tenant, *[{"type": "a"}] * 10)
    assert response.headers["X-RateLimit-Remaining"] == "5990"


def test_limit_reached_is_429_with_retry_after_and_stores_nothing(make_app):
    client = make_app(TENANT_RATE_LIMIT_DEFAULT="5/minute").test_client()
    tenant = create_tenant(client, "acme")
    assert post_events(client, tenant, *[{"type": "a"}] * 4).status_code == 201
    refused = post_events(client, tenant, {"type": "b"}, {"type": "b"})
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "1"
    listed = client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"]
    assert [e["type"] for e in listed] == ["a"] * 4
    assert (
        client.post("/api/v1/events", json={"type": "c"}, headers=tenant["headers"]).status_code
        == 201
    )


def test_per_tenant_override(make_app):
    client = make_app(TENANT_RATE_LIMIT_DEFAULT="1000/minute").test_client()
    tenant = create_tenant(client, "acme", rate_limit=2)
    statuses = [
        client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"]).status_code
        for _ in range(3)
    ]
    assert statuses == [201, 201, 429]


def test_one_tenant_at_its_limit_never_slows_another(make_app):
    client = make_app(TENANT_RATE_LIMIT_DEFAULT="3/minute").test_client()
    noisy, quiet = create_tenant(client, "noisy"), create_tenant(client, "quiet")
    post_events(client, noisy, *[{"type": "a"}] * 3)
    assert (
        client.post("/api/v1/events", json={"type": "a"}, headers=noisy["headers"]).status_code
        == 429
    )
    response = client.post("/api/v1/events", json={"type": "a"}, headers=quiet["headers"])
    assert response.status_code == 201
    assert response.headers["X-RateLimit-Remaining"] == "2"


def test_jwt_and_key_share_the_tenant_budget(make_app):
    client = make_app(TENANT_RATE_LIMIT_DEFAULT="2/minute").test_client()
    tenant = create_tenant(client, "acme")
    token = client.post(
        f"/api/v1/tenants/{tenant['id']}/token", headers=tenant["headers"]
    ).get_json()["token"]
    client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"])
    client.post("/api/v1/events", json={"type": "a"}, headers={"Authorization": f"Bearer {token}"})
    third = client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"])
    assert third.status_code == 429


def test_reads_have_their_own_budget(make_app):
    client = make_app(
        TENANT_RATE_LIMIT_DEFAULT="1/minute", TENANT_READ_RATE_LIMIT="2/minute"
    ).test_client()
    tenant = create_tenant(client, "acme")
    assert (
        client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"]).status_code
        == 201
    )
    reads = [client.get("/api/v1/events", headers=tenant["headers"]).status_code for _ in range(3)]
    assert reads == [200, 200, 429]


def test_limits_can_be_turned_off_entirely(make_app):
    client = make_app(
        RATELIMIT_ENABLED=False,
        TENANT_RATE_LIMIT_DEFAULT="1/minute",
        AUTH_FAILURE_RATE_LIMIT="1/minute",
    ).test_client()
    tenant = create_tenant(client, "acme")
    bad = [client.get("/api/v1/events", headers={"X-API-Key": "ik_x"}) for _ in range(3)]
    assert [r.status_code for r in bad] == [401, 401, 401]
    posts = [post_events(client, tenant, {"type": "a"}).status_code for _ in range(3)]
    assert posts == [201, 201, 201]
