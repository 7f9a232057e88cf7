"""Under eventlet, a request waiting on PostgreSQL must not hold up the others.

psycopg 3's C wait loop is not green and would block the whole process; psycopg2
with eventlet's wait callback yields. This runs against the local PostgreSQL in
every CI run, whatever database the rest of the suite uses.
"""

import threading
import time

import psycopg2
import requests


def test_a_request_blocked_in_postgres_does_not_block_others(
    live_server_factory, postgres_database
):
    server = live_server_factory(mode="eventlet", database_url=postgres_database)
    tenant = server.create_tenant("acme")

    # Hold a lock that makes the next tenant creation wait inside PostgreSQL.
    locker = psycopg2.connect(postgres_database)
    # Blocks INSERTs into tenants but not reads.
    locker.cursor().execute("LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE")
    blocked = {}

    def create_blocked_tenant():
        started = time.monotonic()
        blocked["status"] = server.create_tenant("blocked") and 201
        blocked["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=create_blocked_tenant)
    thread.start()
    try:
        time.sleep(0.5)  # the blocked request is now waiting on the lock
        assert thread.is_alive()
        timings = []
        for _ in range(10):
            started = time.monotonic()
            response = requests.get(server.url + "/health", timeout=5)
            timings.append(time.monotonic() - started)
            assert response.status_code == 200
        listed = requests.get(
            server.url + "/api/v1/events", headers={"X-API-Key": tenant["api_key"]}, timeout=5
        )
        assert listed.status_code == 200
    finally:
        time.sleep(0.5)
        locker.rollback()
        locker.close()
        thread.join(timeout=10)
    # Generous bound: with a blocking driver every request would wait ~1 s for the lock.
    assert max(timings) < 0.5, timings
    assert blocked["status"] == 201 and blocked["seconds"] >= 0.9
