"""Real servers (eventlet and threading) with real python-socketio clients."""

import threading
import time

import pytest
import socketio

from .server import ADMIN_TOKEN


class Subscriber:
    """A python-socketio client that records what it receives."""

    def __init__(self, url: str, **auth):
        self.events: list[dict] = []
        self.replay_complete: list[dict] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("event", self.events.append)
        self.client.on("replay_complete", self.replay_complete.append)
        self.client.connect(url, auth=auth, transports=["websocket"], wait_timeout=10)

    def wait_for(self, condition, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {len(self.events)} events")
            time.sleep(0.02)

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture
def subscribers():
    opened: list[Subscriber] = []

    def open_(url, **auth):
        subscriber = Subscriber(url, **auth)
        opened.append(subscriber)
        return subscriber

    yield open_
    for subscriber in opened:
        subscriber.close()


def test_ingested_event_reaches_the_tenant_and_nobody_else(live_server, subscribers):
    acme = live_server.create_tenant("acme")
    globex = live_server.create_tenant("globex")
    mine = subscribers(live_server.url, api_key=acme["api_key"])
    theirs = subscribers(live_server.url, api_key=globex["api_key"])
    response = live_server.post_events(acme["api_key"], [{"type": "hello", "id": "h1"}])
    assert response.status_code == 201
    mine.wait_for(lambda: len(mine.events) == 1)
    stored = live_server.admin("GET", "/api/v1/events", headers={"X-API-Key": acme["api_key"]})
    assert mine.events == stored.json()["data"]
    time.sleep(0.3)
    assert theirs.events == []


@pytest.mark.parametrize(
    ("auth", "reason"),
    [({"api_key": "ik_wrong"}, "authentication_failed"), ({"token": ADMIN_TOKEN}, "forbidden")],
)
def test_refused_connection_says_why(live_server, auth, reason):
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(live_server.url, auth=auth, transports=["websocket"])
    assert errors and errors[0]["message"].startswith(reason)


def test_reconnect_with_last_event_id_replays_exactly_the_missed_events(live_server, subscribers):
    tenant = live_server.create_tenant("acme")
    key = tenant["api_key"]
    first = subscribers(live_server.url, api_key=key)
    live_server.post_events(key, [{"type": "seen", "id": "seen-0"}])
    first.wait_for(lambda: len(first.events) == 1)
    first.close()

    missed = [{"type": "missed", "id": f"m{i:02d}"} for i in range(50)]
    for start in range(0, 50, 10):
        assert live_server.post_events(key, missed[start : start + 10]).status_code == 201

    # Keep ingesting from another thread while the client reconnects and replays.
    stop, live_ids = threading.Event(), []

    def keep_ingesting():
        n = 0
        while not stop.is_set():
            event_id = f"live{n:04d}"
            if live_server.post_events(key, [{"type": "live", "id": event_id}]).status_code == 201:
                live_ids.append(event_id)
            n += 1
            time.sleep(0.005)

    writer = threading.Thread(target=keep_ingesting)
    writer.start()
    try:
        again = subscribers(live_server.url, api_key=key, last_event_id="seen-0")
        again.wait_for(lambda: again.replay_complete and len(live_ids) >= 20)
    finally:
        stop.set()
        writer.join()
    again.wait_for(
        lambda: (
            {"live"} <= {e["type"] for e in again.events}
            and all(i in {e["id"] for e in again.events} for i in live_ids)
        )
    )

    ids = [e["id"] for e in again.events]
    assert ids[:50] == [e["id"] for e in missed]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert ids[50:] == [i for i in ids[50:] if i.startswith("live")]
    assert set(ids[50:]) == set(live_ids)
    assert again.replay_complete[0]["truncated"] is False
    assert again.replay_complete[0]["count"] >= 50
