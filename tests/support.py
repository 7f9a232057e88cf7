"""Helpers shared by the tests: the admin token and shortcuts to create tenants and events."""

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
