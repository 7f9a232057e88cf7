"""Key revocation, disabling and deletion across two real nodes sharing a database.

With a shared Redis, a change made on one node is refused on the other from the moment
it is answered; without one, the other node follows within CREDENTIAL_CACHE_SECONDS.
Sockets on every node are told why and dropped within 5 s.
"""

import time
import uuid

import pytest
import requests
import socketio

from .server import LiveServer

pytestmark = pytest.mark.e2e


class Socket:
    """A python-socketio client that records why it was dropped."""

    def __init__(self, url: str, **auth):
        self.reasons: list[dict] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("revoked", self.reasons.append)
        self.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)

    def dropped_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.client.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.client.connected

    def close(self) -> None:
        self.client.disconnect()


def _status(node, key: str) -> tuple[int, str | None]:
    response = requests.get(node.url + "/api/v1/events", headers={"X-API-Key": key}, timeout=10)
    body = response.json()
    return response.status_code, body["error"]["code"] if "error" in body else None


@pytest.fixture(scope="module")
def two_nodes(session_databases, shared_redis_url):
    """Two nodes for the module (each test uses tenants of its own): starting two per
    test cost ~8 s each."""
    database_url = session_databases.new()
    env = {
        "REDIS_URL": shared_redis_url,
        "SOCKETIO_CHANNEL": f"ingest-test-{uuid.uuid4().hex}",
        "RATELIMIT_KEY_PREFIX": f"ingest-test-{uuid.uuid4().hex}",
        # Long: only announcements, never an expired cache entry, can explain a refusal.
        "CREDENTIAL_CACHE_SECONDS": "300",
    }
    node_a = LiveServer(database_url, **env).start()
    node_b = LiveServer(database_url, **env).start(migrate=False)
    yield node_a, node_b
    node_a.stop()
    node_b.stop()


def test_a_revoked_key_is_refused_at_once_on_both_nodes_and_its_sockets_dropped(two_nodes):
    node_a, node_b = two_nodes
    tenant = node_a.create_tenant("revoked")
    second = node_a.admin("POST", f"/api/v1/tenants/{tenant['id']}/keys").json()
    sockets = [Socket(node.url, api_key=tenant["api_key"]) for node in two_nodes]
    keeps = Socket(node_b.url, api_key=second["api_key"])
    try:
        for node in two_nodes:
            assert _status(node, tenant["api_key"]) == (200, None)  # cached on both
        revoked = node_a.admin(
            "DELETE", f"/api/v1/tenants/{tenant['id']}/keys/{tenant['api_key_prefix']}"
        )
        assert revoked.status_code == 204
        for node in (node_b, node_a):
            assert _status(node, tenant["api_key"]) == (401, "authentication_failed")
            assert _status(node, second["api_key"]) == (200, None)
        for socket in sockets:
            assert socket.dropped_within(5)
            assert [r["code"] for r in socket.reasons] == ["key_revoked"]
        assert keeps.client.connected
    finally:
        for socket in (*sockets, keeps):
            socket.close()


def test_disable_drops_sockets_everywhere_and_enable_restores(two_nodes):
    node_a, node_b = two_nodes
    tenant = node_a.create_tenant("disabled-one")
    other = node_a.create_tenant("bystander")
    socket = Socket(node_a.url, api_key=tenant["api_key"])
    bystander = Socket(node_a.url, api_key=other["api_key"])
    try:
        assert _status(node_a, tenant["api_key"]) == (200, None)
        changed = node_b.admin("PATCH", f"/api/v1/tenants/{tenant['id']}", json={"disabled": True})
        assert changed.json()["status"] == "disabled"
        assert _status(node_a, tenant["api_key"]) == (403, "tenant_disabled")
        assert socket.dropped_within(5)
        assert [r["code"] for r in socket.reasons] == ["tenant_disabled"]
        with pytest.raises(socketio.exceptions.ConnectionError):
            Socket(node_a.url, api_key=tenant["api_key"])
        assert bystander.client.connected
        node_b.admin("PATCH", f"/api/v1/tenants/{tenant['id']}", json={"disabled": False})
        assert _status(node_a, tenant["api_key"]) == (200, None)
        Socket(node_a.url, api_key=tenant["api_key"]).close()
    finally:
        socket.close()
        bystander.close()


def test_delete_is_refused_at_once_purged_in_the_background_then_404(two_nodes):
    node_a, node_b = two_nodes
    tenant = node_a.create_tenant("deleted-one")
    assert node_a.post_events(tenant["api_key"], [{"type": "t"}] * 50).status_code == 201
    socket = Socket(node_b.url, api_key=tenant["api_key"])
    try:
        assert _status(node_b, tenant["api_key"]) == (200, None)
        response = node_a.admin("DELETE", f"/api/v1/tenants/{tenant['id']}")
        assert (response.status_code, response.json()) == (202, {"status": "deleting"})
        assert _status(node_b, tenant["api_key"]) == (401, "authentication_failed")
        assert socket.dropped_within(5)
        assert [r["code"] for r in socket.reasons] == ["tenant_deleted"]
        assert node_b.create_tenant("deleted-one")["id"] != tenant["id"]
        # The node that took the DELETE purges at once, not at its next PURGE_INTERVAL_S.
        deadline = time.monotonic() + 10
        while node_b.admin("GET", f"/api/v1/tenants/{tenant['id']}").status_code == 200:
            assert time.monotonic() < deadline, "the purge did not finish in 10 s"
            time.sleep(0.1)
        assert node_b.admin("GET", f"/api/v1/tenants/{tenant['id']}").status_code == 404
    finally:
        socket.close()


def test_without_redis_other_nodes_follow_within_the_cache_time(
    live_server_factory, fresh_database
):
    database_url = fresh_database()
    node_a = live_server_factory(database_url=database_url, CREDENTIAL_CACHE_SECONDS="1")
    node_b = live_server_factory(database_url=database_url, CREDENTIAL_CACHE_SECONDS="1")
    tenant = node_a.create_tenant("acme")
    socket = Socket(node_b.url, api_key=tenant["api_key"])
    try:
        assert _status(node_b, tenant["api_key"]) == (200, None)
        node_a.admin("PATCH", f"/api/v1/tenants/{tenant['id']}", json={"disabled": True})
        deadline = time.monotonic() + 2
        while _status(node_b, tenant["api_key"]) != (403, "tenant_disabled"):
            assert time.monotonic() < deadline, "node B still let the key in after 2 s"
            time.sleep(0.05)
        assert socket.dropped_within(5)
    finally:
        socket.close()
