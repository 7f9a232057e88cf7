"""Tenant endpoints: creation, listing, lookup, isolation, tokens."""

import hashlib

from sqlalchemy import select

from ingest.extensions import db
from ingest.models import ApiKey, Tenant
from tests.support import create_tenant


def test_create_tenant_returns_key_once(client, admin_headers):
    response = client.post(
        "/api/v1/tenants", json={"name": "Acme", "rate_limit": 120}, headers=admin_headers
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {
        "id",
        "name",
        "api_key",
        "api_key_prefix",
        "rate_limit",
        "created_at",
        "disabled",
        "retention_days",
        "status",
    }
    assert (body["disabled"], body["retention_days"], body["status"]) == (False, None, "active")
    assert body["name"] == "Acme"
    assert body["rate_limit"] == 120
    assert body["api_key"].startswith("ik_")
    assert len(body["api_key"]) >= 43 + 3  # 32 random bytes, base64url
    assert body["api_key"].startswith(body["api_key_prefix"])


def test_api_key_is_stored_only_as_a_hash(app, client):
    tenant = create_tenant(client, "acme")
    with app.app_context():
        rows = [db.session.scalars(select(Tenant)).one(), db.session.scalars(select(ApiKey)).one()]
        stored = [str(value) for row in rows for value in row.__dict__.values()]
    assert all(tenant["api_key"] not in value for value in stored)
    assert rows[1].key_hash == hashlib.sha256(tenant["api_key"].encode()).hexdigest()


def test_duplicate_name_is_a_conflict_whatever_the_case(client, admin_headers):
    create_tenant(client, "Acme")
    response = client.post("/api/v1/tenants", json={"name": "aCME"}, headers=admin_headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"


def test_create_tenant_rejects_bad_fields_by_name(client, admin_headers):
    cases = [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "rate_limit": 0}, "rate_limit"),
        ({"name": "ok", "rate_limit": "10"}, "rate_limit"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/tenants", json=body, headers=admin_headers)
        assert response.status_code == 400, body
        error = response.get_json()["error"]
        assert error["code"] == "validation_error"
        assert field in error["details"], (body, error)


def test_creating_tenants_needs_the_admin_token(client, tenant):
    response = client.post("/api/v1/tenants", json={"name": "x"}, headers=tenant["headers"])
    assert response.status_code == 403
    assert client.post("/api/v1/tenants", json={"name": "x"}).status_code == 401


def test_list_tenants_never_includes_keys(client, admin_headers, tenant, other_tenant):
    response = client.get("/api/v1/tenants", headers=admin_headers)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert [t["name"] for t in data] == ["acme", "globex"]
    text = response.get_data(as_text=True)
    assert tenant["api_key"] not in text and other_tenant["api_key"] not in text
    assert all("api_key" not in t for t in data)


def test_listing_tenants_is_admin_only(client, tenant):
    assert client.get("/api/v1/tenants", headers=tenant["headers"]).status_code == 403


def test_tenant_can_read_itself_but_not_another(client, tenant, other_tenant):
    own = client.get(f"/api/v1/tenants/{tenant['id']}", headers=tenant["headers"])
    assert own.status_code == 200 and own.get_json()["name"] == "acme"
    other = client.get(f"/api/v1/tenants/{other_tenant['id']}", headers=tenant["headers"])
    assert other.status_code == 404
    assert other.get_json()["error"]["code"] == "not_found"


def test_admin_can_read_any_tenant(client, admin_headers, tenant):
    assert client.get(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers).status_code == 200
    assert client.get("/api/v1/tenants/9999", headers=admin_headers).status_code == 404


def test_me_tells_the_role(client, admin_headers, tenant):
    assert client.get("/api/v1/tenants/me", headers=admin_headers).get_json() == {
        "role": "admin",
        "tenant": None,
    }
    me = client.get("/api/v1/tenants/me", headers=tenant["headers"]).get_json()
    assert me["role"] == "tenant" and me["tenant"]["id"] == tenant["id"]
