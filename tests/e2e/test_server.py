"""The server entry point itself (wsgi.py), as `make run` starts it."""

import statistics
import time

import requests


def test_large_keep_alive_responses_are_not_held_back_by_nagle(live_server_factory):
    """Responses over eventlet's 16 KiB write buffer used to wait ~40 ms for a delayed ACK.

    The bound is loose (the stall is a fixed 40 ms; an answer takes a few ms here).
    """
    server = live_server_factory(mode="eventlet")
    tenant = server.create_tenant("acme")
    server.post_events(
        tenant["api_key"], [{"type": "page.view", "metadata": {"path": "/x" * 100}}] * 60
    )
    session = requests.Session()
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        response = session.get(
            server.url + "/api/v1/events", headers={"X-API-Key": tenant["api_key"]}, timeout=5
        )
        timings.append(time.perf_counter() - started)
        assert len(response.content) > 16 * 1024
    assert statistics.median(timings) < 0.035, timings
