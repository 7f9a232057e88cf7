"""Request ids, security headers, CORS and the access log."""

import json
import logging


def test_request_id_is_generated_or_echoed(client):
    generated = client.get("/health").headers["X-Request-ID"]
    assert len(generated) == 32
    assert (
        client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    unsafe = client.get("/health", headers={"X-Request-ID": 'bad id "quoted"'})
    assert unsafe.headers["X-Request-ID"] != 'bad id "quoted"'
    assert len(unsafe.headers["X-Request-ID"]) == 32


def test_security_headers(client):
    headers = client.get("/api/v1/events").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in headers
    secure = client.get("/health", base_url="https://localhost").headers
    assert secure["Strict-Transport-Security"].startswith("max-age=")


def test_cors_preflight_allows_credentials_headers_and_exposes_limits(client):
    response = client.options(
        "/api/v1/events",
        headers={
            "Origin": "https://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Authorization, Content-Type",
        },
    )
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "x-api-key" in allowed and "authorization" in allowed


def test_cors_exposes_rate_limit_headers(client, tenant):
    response = client.get(
        "/api/v1/events", headers={**tenant["headers"], "Origin": "https://x.test"}
    )
    exposed = response.headers["Access-Control-Expose-Headers"]
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"):
        assert name in exposed


def test_cors_origins_are_configurable(make_app):
    client = make_app(CORS_ORIGINS=["https://ok.test"]).test_client()
    assert (
        client.get("/health", headers={"Origin": "https://ok.test"}).headers.get(
            "Access-Control-Allow-Origin"
        )
        is None
    )  # /health is not under /api/
    allowed = client.get("/api/v1/health", headers={"Origin": "https://ok.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ok.test"
    refused = client.get("/api/v1/health", headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_access_log_has_one_line_per_request_and_no_secrets(client, tenant, caplog):
    token = client.post(
        f"/api/v1/tenants/{tenant['id']}/token", headers=tenant["headers"]
    ).get_json()["token"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ingest.access"):
        client.get(
            f"/api/v1/events?api_key={tenant['api_key']}",
            headers={"Authorization": f"Bearer {token}"},
        )
        client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"])
    lines = [r.getMessage() for r in caplog.records if r.name == "ingest.access"]
    assert len(lines) == 2
    entry = json.loads(lines[0])
    assert set(entry) == {"method", "path", "status", "duration_ms", "tenant", "request_id"}
    assert entry["path"] == "/api/v1/events" and entry["tenant"] == tenant["id"]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert tenant["api_key"] not in everything and token not in everything
