"""Helpers shared by the tests: the admin token, shortcuts to create tenants and events, and
what a test does when a service it needs is missing."""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def create_tenant(client, name: str, **fields) -> dict:
    response = client.post(
        "/api/v1/tenants",
        json={"name": name, **fields},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    body["headers"] = {"X-API-Key": body["api_key"]}
    return body


def post_events(client, tenant: dict, *events: dict):
    return client.post(
        "/api/v1/events/batch", json={"events": list(events)}, headers=tenant["headers"]
    )


def require(service: str, missing: str | None) -> None:
    """Go on if ``missing`` is None; else skip the test saying why, or fail it in CI."""
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"{service} is required in CI: {missing}", pytrace=False)
    pytest.skip(f"{service} unavailable: {missing}")
