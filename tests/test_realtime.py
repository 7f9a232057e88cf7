"""Socket.IO with Flask-SocketIO's test client: auth, rooms, isolation, filters, replay."""

import threading
import time

import pytest

from ingest.extensions import socketio
from tests.support import create_tenant, post_events


def _connect(app, client, **auth):
    return socketio.test_client(app, auth=auth or None, flask_test_client=client)


def _events(socket_client, name="event"):
    return [m["args"][0] for m in socket_client.get_received() if m["name"] == name]


def _received_until(socket_client, done, timeout=5.0):
    """Collect messages until ``done(messages)``; the replay runs in a background task."""
    messages, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages += socket_client.get_received()
        if done(messages):
            break
        time.sleep(0.01)
    return messages


def _stored(client, tenant, event_id: str) -> dict:
    """One stored event as the API lists it (and as Socket.IO pushes it)."""
    events = client.get("/api/v1/events?limit=1000", headers=tenant["headers"]).get_json()["data"]
    return next(event for event in events if event["id"] == event_id)


def _live_events_until(socket_client, event_id: str) -> list[str]:
    """Ids of the events received up to ``event_id``: once the replay is over, live events
    come straight to the socket, or from its buffer a moment after replay_complete."""
    messages = _received_until(
        socket_client,
        lambda ms: any(m["name"] == "event" and m["args"][0]["id"] == event_id for m in ms),
    )
    return [m["args"][0]["id"] for m in messages if m["name"] == "event"]


def _token(client, tenant):
    return client.post(
        f"/api/v1/tenants/{tenant['id']}/token", headers=tenant["headers"]
    ).get_json()["token"]


def test_connect_with_key_token_or_query_string(app, client, tenant):
    assert _connect(app, client, api_key=tenant["api_key"]).is_connected()
    assert _connect(app, client, token=_token(client, tenant)).is_connected()
    by_query = socketio.test_client(
        app, query_string=f"api_key={tenant['api_key']}", flask_test_client=client
    )
    assert by_query.is_connected()


@pytest.mark.parametrize(
    "auth",
    [None, {"api_key": "ik_wrong"}, {"token": "not.a.jwt"}, {"api_key": 42}],
)
def test_bad_credentials_are_refused(app, client, tenant, auth):
    socket_client = socketio.test_client(app, auth=auth, flask_test_client=client)
    assert not socket_client.is_connected()


def test_admin_token_has_no_stream(app, client, admin_headers):
    token = admin_headers["Authorization"].split()[1]
    assert not _connect(app, client, token=token).is_connected()


def test_stored_events_are_pushed_to_the_tenant_only(app, client, tenant, other_tenant):
    mine = _connect(app, client, api_key=tenant["api_key"])
    theirs = _connect(app, client, api_key=other_tenant["api_key"])
    stored = client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"]).get_json()
    post_events(client, tenant, {"type": "b", "id": "b1"}, {"type": "c", "id": "c1"})
    assert _events(mine) == [
        stored,
        *client.get("/api/v1/events?limit=2", headers=tenant["headers"]).get_json()["data"][::-1],
    ]
    assert _events(theirs) == []


def test_idempotent_retry_and_rejected_batch_push_nothing(app, client, tenant):
    client.post("/api/v1/events", json={"type": "a", "id": "x"}, headers=tenant["headers"])
    listener = _connect(app, client, api_key=tenant["api_key"])
    client.post("/api/v1/events", json={"type": "a", "id": "x"}, headers=tenant["headers"])
    post_events(client, tenant, {"type": "ok"}, {"type": "bad type"})
    assert _events(listener) == []


def test_emitting_join_cannot_enter_another_room(app, client, tenant, other_tenant):
    intruder = _connect(app, client, api_key=tenant["api_key"])
    for name in ("join", "join_room", "subscribe"):
        intruder.emit(name, {"room": f"tenant:{other_tenant['id']}", "tenant": other_tenant["id"]})
    post_events(client, other_tenant, {"type": "secret"})
    assert _events(intruder) == []


def test_subscribe_filters_types(app, client, tenant):
    listener = _connect(app, client, api_key=tenant["api_key"])
    ack = listener.emit("subscribe", {"types": ["keep", "also"]}, callback=True)
    assert ack == {"types": ["also", "keep"]}
    post_events(client, tenant, {"type": "keep"}, {"type": "drop"}, {"type": "also"})
    assert [e["type"] for e in _events(listener)] == ["keep", "also"]
    listener.emit("subscribe", {"types": []}, callback=True)
    post_events(client, tenant, {"type": "drop"})
    assert [e["type"] for e in _events(listener)] == ["drop"]


def test_subscribe_rejects_malformed_filters(app, client, tenant):
    listener = _connect(app, client, api_key=tenant["api_key"])
    ack = listener.emit("subscribe", {"types": "keep"}, callback=True)
    assert ack["error"]["code"] == "validation_error"


def test_replay_sends_missed_events_oldest_first_then_live(app, client, tenant):
    post_events(client, tenant, *[{"type": "t", "id": f"e{i}"} for i in range(5)])
    listener = _connect(app, client, api_key=tenant["api_key"], last_event_id="e1")
    messages = _received_until(listener, lambda ms: any(m["name"] == "replay_complete" for m in ms))
    names = [(m["name"], m["args"][0].get("id")) for m in messages]
    assert names == [("event", "e2"), ("event", "e3"), ("event", "e4"), ("replay_complete", None)]
    assert messages[-1]["args"][0] == {"count": 3, "truncated": False}
    post_events(client, tenant, {"type": "t", "id": "live"})
    assert _live_events_until(listener, "live") == ["live"]


def test_replay_is_truncated_to_the_newest_window(make_app):
    app = make_app(REPLAY_LIMIT=3)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    post_events(client, tenant, *[{"type": "t", "id": f"e{i}"} for i in range(10)])
    listener = _connect(app, client, api_key=tenant["api_key"], last_event_id="e0")
    messages = _received_until(listener, lambda ms: any(m["name"] == "replay_complete" for m in ms))
    assert [m["args"][0]["id"] for m in messages if m["name"] == "event"] == ["e7", "e8", "e9"]
    assert messages[-1]["args"][0] == {"count": 3, "truncated": True}


def test_unknown_last_event_id_replays_latest_window_as_truncated(app, client, tenant):
    post_events(client, tenant, {"type": "t", "id": "a"}, {"type": "t", "id": "b"})
    listener = _connect(app, client, api_key=tenant["api_key"], last_event_id="never-seen")
    messages = _received_until(listener, lambda ms: any(m["name"] == "replay_complete" for m in ms))
    assert [m["args"][0]["id"] for m in messages if m["name"] == "event"] == ["a", "b"]
    assert messages[-1]["args"][0] == {"count": 2, "truncated": True}


def test_replay_never_crosses_tenants(app, client, tenant, other_tenant):
    post_events(client, other_tenant, {"type": "t", "id": "shared-id"}, {"type": "secret"})
    post_events(client, tenant, {"type": "t", "id": "shared-id"}, {"type": "mine"})
    listener = _connect(app, client, api_key=tenant["api_key"], last_event_id="shared-id")
    messages = _received_until(listener, lambda ms: any(m["name"] == "replay_complete" for m in ms))
    assert [m["args"][0]["type"] for m in messages if m["name"] == "event"] == ["mine"]


def test_live_events_during_replay_are_delivered_once_after_it(app, client, tenant):
    """Events stored while the replay is running arrive after replay_complete, once each."""
    from ingest import realtime

    post_events(client, tenant, *[{"type": "t", "id": f"old{i}"} for i in range(3)])
    original = realtime.events_to_replay

    def slow_replay_query(*args, **kwargs):
        result = original(*args, **kwargs)
        # New events land after the replay's snapshot but before it finishes.
        post_events(
            app.test_client(),
            tenant,
            {"type": "t", "id": "during1"},
            {"type": "t", "id": "during2"},
        )
        return result

    realtime.events_to_replay = slow_replay_query
    try:
        listener = _connect(app, client, api_key=tenant["api_key"], last_event_id="old0")
        messages = _received_until(
            listener,
            lambda ms: (
                sum(1 for m in ms if m["name"] == "event") >= 4
                and any(m["name"] == "replay_complete" for m in ms)
            ),
        )
    finally:
        realtime.events_to_replay = original
    sequence = [m["args"][0].get("id", "|") if m["name"] == "event" else "|" for m in messages]
    assert sequence == ["old1", "old2", "|", "during1", "during2"]


def test_failed_socket_logins_lock_out_failures_but_not_valid_keys(make_app):
    app = make_app(AUTH_FAILURE_RATE_LIMIT="2/minute")
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    for _ in range(2):
        assert not _connect(app, client, api_key="ik_wrong").is_connected()
    # Locked out now, over Socket.IO and HTTP alike, for failures only.
    assert client.get("/api/v1/events", headers={"X-API-Key": "ik_wrong"}).status_code == 429
    assert _connect(app, client, api_key=tenant["api_key"]).is_connected()
    assert client.get("/api/v1/events", headers=tenant["headers"]).status_code == 200


def test_replayed_event_whose_live_copy_comes_late_is_delivered_once(
    app, client, tenant, monkeypatch
):
    """The replay can read an event between its commit and its publish."""
    from ingest import realtime

    post_events(client, tenant, {"type": "t", "id": "seen"})
    late = []
    monkeypatch.setattr(
        app.extensions["group_commit"],
        "subscribers",
        [lambda tenant_id, events: late.extend(events)],
    )
    post_events(client, tenant, {"type": "t", "id": "committed-not-yet-published"})
    monkeypatch.undo()

    listener = _connect(app, client, api_key=tenant["api_key"], last_event_id="seen")
    messages = _received_until(listener, lambda ms: any(m["name"] == "replay_complete" for m in ms))
    assert [m["args"][0]["id"] for m in messages if m["name"] == "event"] == [
        "committed-not-yet-published"
    ]
    realtime.publish_events(tenant["id"], late)  # the live copy arrives after the replay
    post_events(client, tenant, {"type": "t", "id": "next"})
    assert _live_events_until(listener, "next") == ["next"]


def test_a_failed_replay_disconnects_instead_of_buffering_forever(app, client, tenant, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from ingest import realtime

    def database_down(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(realtime, "events_to_replay", database_down)
    listener = _connect(app, client, api_key=tenant["api_key"], last_event_id="x")
    deadline = time.monotonic() + 5
    while listener.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not listener.is_connected()
    assert not any(feed.replaying for feed in realtime.feeds._feeds.values())


def test_a_filter_set_before_the_replay_reads_applies_to_it_and_to_its_count(
    app, client, tenant, monkeypatch
):
    from ingest import realtime

    post_events(
        client,
        tenant,
        {"type": "seen", "id": "s"},
        {"type": "a", "id": "a1"},
        {"type": "b", "id": "b1"},
        {"type": "a", "id": "a2"},
    )
    # The replay starts in the background at connect; hold its read until the filter is
    # in place, so that the subscribe below is known to come first.
    subscribed, read_events = threading.Event(), realtime.events_to_replay

    def read_after_subscribe(*args, **kwargs):
        subscribed.wait(5)
        return read_events(*args, **kwargs)

    monkeypatch.setattr(realtime, "events_to_replay", read_after_subscribe)
    resumed = _connect(app, client, api_key=tenant["api_key"], last_event_id="s")
    assert resumed.emit("subscribe", {"types": ["a"]}, callback=True) == {"types": ["a"]}
    subscribed.set()
    messages = _received_until(resumed, lambda ms: any(m["name"] == "replay_complete" for m in ms))
    assert [(m["name"], m["args"][0]) for m in messages] == [
        ("event", _stored(client, tenant, "a1")),
        ("event", _stored(client, tenant, "a2")),
        ("replay_complete", {"count": 2, "truncated": False}),
    ]


def test_a_tenant_gets_at_most_its_share_of_sockets(make_app):
    app = make_app(MAX_SOCKETS_PER_TENANT=2)
    client = app.test_client()
    acme, globex = create_tenant(client, "acme"), create_tenant(client, "globex")
    first, second = (_connect(app, client, api_key=acme["api_key"]) for _ in range(2))
    assert first.is_connected() and second.is_connected()
    assert not _connect(app, client, api_key=acme["api_key"]).is_connected()
    assert _connect(app, client, api_key=globex["api_key"]).is_connected()
    first.disconnect()
    assert _connect(app, client, api_key=acme["api_key"]).is_connected()
