"""Two server processes sharing a database and a Redis (``shared_redis_url``)."""

import uuid

from .test_realtime_e2e import Subscriber


def test_event_ingested_on_one_node_reaches_a_client_on_the_other(
    live_server_factory, shared_redis_url, fresh_database
):
    database_url = fresh_database()
    channel = f"ingest-test-{uuid.uuid4().hex}"
    env = {"REDIS_URL": shared_redis_url, "SOCKETIO_CHANNEL": channel}
    node_a = live_server_factory(database_url=database_url, **env)
    node_b = live_server_factory(database_url=database_url, **env)
    tenant = node_a.create_tenant("acme")
    other = node_a.create_tenant("globex")

    on_b = Subscriber(node_b.url, api_key=tenant["api_key"])
    other_on_b = Subscriber(node_b.url, api_key=other["api_key"])
    on_a = Subscriber(node_a.url, api_key=tenant["api_key"])
    try:
        assert node_a.post_events(tenant["api_key"], [{"type": "from-a", "id": "a1"}]).ok
        assert node_b.post_events(tenant["api_key"], [{"type": "from-b", "id": "b1"}]).ok
        for subscriber in (on_a, on_b):
            subscriber.wait_for(lambda s=subscriber: len(s.events) == 2)
            assert sorted(e["id"] for e in subscriber.events) == ["a1", "b1"]
        assert other_on_b.events == []
    finally:
        for subscriber in (on_a, on_b, other_on_b):
            subscriber.close()


def test_rate_limits_hold_across_nodes(live_server_factory, shared_redis_url, fresh_database):
    database_url = fresh_database()
    env = {
        "REDIS_URL": shared_redis_url,
        "RATELIMIT_KEY_PREFIX": f"ingest-test-{uuid.uuid4().hex}",
        "SOCKETIO_CHANNEL": f"ingest-test-{uuid.uuid4().hex}",
    }
    node_a = live_server_factory(database_url=database_url, **env)
    node_b = live_server_factory(database_url=database_url, **env)
    tenant = node_a.create_tenant("acme", rate_limit=4)
    assert node_a.post_events(tenant["api_key"], [{"type": "a"}] * 3).status_code == 201
    assert node_b.post_events(tenant["api_key"], [{"type": "a"}] * 2).status_code == 429
    assert node_b.post_events(tenant["api_key"], [{"type": "a"}]).status_code == 201
