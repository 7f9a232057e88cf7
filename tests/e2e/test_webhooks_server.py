"""Webhooks on a live eventlet server: the delivery worker writes beside the group commit."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def test_the_worker_and_ingestion_write_side_by_side_without_locking_each_other_out(
    live_server_factory,
):
    """SQLite under eventlet: a writer that met another's open transaction waited in
    SQLite's busy handler, which froze the hub, so that transaction could never finish:
    'database is locked' after 10 s, batches taking 30 s (now they take turns)."""
    receiver = Receiver()
    try:
        server = live_server_factory(
            WEBHOOK_ALLOW_PRIVATE="1", WEBHOOK_POLL_MS="20", WEBHOOK_WORKER="process"
        )
        tenant = server.create_tenant("acme")
        headers = {"X-API-Key": tenant["api_key"]}
        created = requests.post(
            server.url + "/api/v1/webhooks", json={"url": receiver.url}, headers=headers, timeout=10
        )
        assert created.status_code == 201
        statuses = []

        def send(n: int) -> None:
            for batch in range(5):
                events = [{"type": "t", "id": f"s{n}-{batch}-{i}"} for i in range(200)]
                statuses.append(server.post_events(tenant["api_key"], events).status_code)

        senders = [threading.Thread(target=send, args=(n,)) for n in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
        assert statuses == [201] * 20
        receiver.wait_for(4000, timeout=60)
        assert sorted(set(receiver.ids())) == sorted(
            f"s{n}-{b}-{i}" for n in range(4) for b in range(5) for i in range(200)
        )
        assert "database is locked" not in server.log()
    finally:
        receiver.close()


def test_numeric_forms_of_private_addresses_are_refused_under_eventlet(live_server_factory):
    """eventlet's resolver does not read "127.1" or "0x7f.1" as addresses (C's inet_aton
    does), so they passed as names not in DNS yet."""
    server = live_server_factory()
    tenant = server.create_tenant("acme")
    for host in ("127.1", "0x7f.1", "017700000001", "2130706433", "0177.0.0.1", "0", "127.0.0.1."):
        response = requests.post(
            server.url + "/api/v1/webhooks",
            json={"url": f"http://{host}/hook"},
            headers={"X-API-Key": tenant["api_key"]},
            timeout=10,
        )
        assert response.status_code == 400, (host, response.json())
