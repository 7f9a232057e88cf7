"""Dependencies going away: nothing acknowledged is lost, health says so, service recovers."""

import time
from urllib.parse import urlsplit

import pytest
import requests

from .services import RedisProcess, TcpProxy
from .test_realtime_e2e import Subscriber


def _wait(condition, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _health(server):
    response = requests.get(server.url + "/health", timeout=5)
    return response.status_code, response.json()["status"]


@pytest.fixture
def private_redis(redis_server_binary):
    redis = RedisProcess().start()
    yield redis
    redis.stop()


def test_redis_outage_loses_nothing_and_recovers(live_server_factory, private_redis):
    server = live_server_factory(REDIS_URL=private_redis.url)
    tenant = server.create_tenant("acme")
    key = tenant["api_key"]
    subscriber = Subscriber(server.url, api_key=key)
    assert server.post_events(key, [{"type": "before", "id": "before"}]).status_code == 201
    subscriber.wait_for(lambda: len(subscriber.events) == 1)
    assert _health(server) == (200, "ok")

    private_redis.stop()
    during = [{"type": "during", "id": f"d{i}"} for i in range(20)]
    started = time.monotonic()
    for event in during:
        assert server.post_events(key, [event]).status_code == 201
    assert time.monotonic() - started < 10, "ingestion crawled while Redis was down"
    assert _health(server) == (200, "degraded")

    private_redis.start()
    _wait(lambda: _health(server) == (200, "ok"), what="health ok")

    # Live delivery resumes once the server's subscriber has reconnected to Redis.
    def delivered_after_recovery():
        server.post_events(key, [{"type": "after"}])
        time.sleep(0.3)
        return any(e["type"] == "after" for e in subscriber.events)

    _wait(delivered_after_recovery, timeout=40, what="live delivery after Redis returned")
    subscriber.close()

    # What the live feed missed is in the database, and a replay brings it back.
    listed = requests.get(
        server.url + "/api/v1/events?type=during&limit=100", headers={"X-API-Key": key}, timeout=5
    ).json()["data"]
    assert sorted(e["id"] for e in listed) == sorted(e["id"] for e in during)
    resumed = Subscriber(server.url, api_key=key, last_event_id="before")
    resumed.wait_for(lambda: resumed.replay_complete)
    replayed = [e["id"] for e in resumed.events if e["type"] == "during"]
    assert replayed == [e["id"] for e in during]
    resumed.close()


def test_database_outage_answers_503_and_recovers(live_server_factory, postgres_database):
    """Runs on PostgreSQL in every CI run: a proxy in front of it is cut and restored."""
    target = urlsplit(postgres_database)
    proxy = TcpProxy(target.hostname, target.port or 5432).start()
    login = target.netloc.rpartition("@")[0]
    through_proxy = target._replace(netloc=f"{login}@127.0.0.1:{proxy.port}").geturl()
    try:
        server = live_server_factory(database_url=through_proxy, DB_POOL_TIMEOUT="2")
        tenant = server.create_tenant("acme")
        key = tenant["api_key"]
        assert server.post_events(key, [{"type": "before", "id": "b"}]).status_code == 201

        proxy.cut()
        started = time.monotonic()
        refused = server.post_events(key, [{"type": "during", "id": "d"}])
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "service_unavailable"
        assert time.monotonic() - started < 15, "the request hung instead of failing"
        assert _health(server)[0] == 503

        proxy.restore()
        _wait(lambda: _health(server) == (200, "ok"), what="health ok after the database returned")
        assert server.post_events(key, [{"type": "after", "id": "a"}]).status_code == 201
        listed = requests.get(
            server.url + "/api/v1/events", headers={"X-API-Key": key}, timeout=5
        ).json()["data"]
        # The refused write left nothing behind; the others are all there.
        assert [e["id"] for e in listed] == ["a", "b"]
    finally:
        proxy.cut()
