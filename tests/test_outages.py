"""Redis going away and coming back, as the rate limiter's storage and the message queue see it."""

import logging
import shutil
import time

import pytest

from ingest.ratelimits import FailoverStorage
from ingest.realtime import RedisFeedManager
from tests.e2e.services import RedisProcess
from tests.support import require


@pytest.fixture
def private_redis():
    found = shutil.which("redis-server")
    require("redis-server", None if found else "not installed (apt-get install redis-server)")
    redis = RedisProcess().start()
    yield redis
    redis.stop()


def _outage_lines(caplog, logger: str) -> list[str]:
    return [r.getMessage().split(":")[0] for r in caplog.records if r.name == logger]


def test_failover_storage_counts_in_memory_while_redis_is_away(private_redis, caplog):
    storage = FailoverStorage("failover+" + private_redis.url)
    storage.outage.retry_seconds = 0.05
    assert storage.incr("hits", 60) == 1
    with caplog.at_level(logging.WARNING, logger="ingest.ratelimits"):
        private_redis.stop()
        counts = []
        for _ in range(3):
            counts.append(storage.incr("hits", 60))
            time.sleep(0.06)  # past the pause: each call tries Redis again
        private_redis.start()  # an empty Redis, as after a restart
        time.sleep(0.06)
        back = [storage.incr("hits", 60) for _ in range(2)]
    assert counts == [1, 2, 3]  # in memory, from zero
    assert back == [1, 2]  # in Redis again
    assert _outage_lines(caplog, "ingest.ratelimits") == [
        "rate limit storage unreachable, counting in memory",
        "rate limit storage reachable again",
    ]


def test_message_queue_publishes_are_skipped_while_redis_is_away(private_redis, caplog):
    manager = RedisFeedManager(private_redis.url, channel="outage-test")
    manager.outage.retry_seconds = 0.05
    assert manager._publish({"n": 1}) == 0  # published; nobody listens
    with caplog.at_level(logging.WARNING, logger="ingest.realtime"):
        private_redis.stop()
        assert [manager._publish({"n": n}) for n in range(3)] == [None] * 3
        assert manager.outage.paused
        private_redis.start()
        time.sleep(0.06)
        assert manager._publish({"n": 4}) == 0
    assert _outage_lines(caplog, "ingest.realtime") == [
        "message queue unreachable; live delivery paused",
        "message queue reachable again; live delivery resumed",
    ]
