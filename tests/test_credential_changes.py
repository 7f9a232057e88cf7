"""Credential changes reach every node listening on Redis before the change is answered."""

import threading
import time
import uuid

import redis

from ingest.auth import Principal


def _listening(url: str, channel: str, nodes: int) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 5
    while dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) < nodes:
        assert time.monotonic() < deadline, "the listener did not subscribe"
        time.sleep(0.01)


def test_a_change_is_answered_only_once_every_listening_node_forgot_it(
    make_app, shared_redis_url, monkeypatch
):
    channel = f"ingest-test-{uuid.uuid4().hex}"
    node_a = make_app(REDIS_URL=shared_redis_url, SOCKETIO_CHANNEL=channel)
    node_b = make_app(REDIS_URL=shared_redis_url, SOCKETIO_CHANNEL=channel)
    cache_b = node_b.extensions["credential_cache"]
    cache_b.put("a key's hash", Principal(tenant_id=7, via="api_key"), cache_b.generation)
    changes_b = node_b.extensions["credential_changes"]
    hears = changes_b.apply

    def slowly(tenant_id):  # a busy node: it takes a while to get to the message
        time.sleep(0.3)
        hears(tenant_id)

    monkeypatch.setattr(changes_b, "apply", slowly)
    threading.Thread(target=changes_b.listen_forever, daemon=True).start()
    _listening(shared_redis_url, f"{channel}-credentials", 1)

    node_a.extensions["credential_changes"].announce(7)
    assert cache_b.get("a key's hash") is None


def test_a_node_that_never_answers_holds_a_change_up_a_second_at_most(
    make_app, shared_redis_url, caplog
):
    channel = f"ingest-test-{uuid.uuid4().hex}"
    node = make_app(REDIS_URL=shared_redis_url, SOCKETIO_CHANNEL=channel)
    silent = redis.Redis.from_url(shared_redis_url).pubsub()
    silent.subscribe(f"{channel}-credentials")  # subscribed, never acknowledging
    _listening(shared_redis_url, f"{channel}-credentials", 1)
    started = time.monotonic()
    node.extensions["credential_changes"].announce(7)
    assert time.monotonic() - started < 3
    assert "0 of 1 nodes acknowledged" in caplog.text
    silent.close()
