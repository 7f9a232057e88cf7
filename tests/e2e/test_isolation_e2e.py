"""The loopback attack on a real server: one tenant's bad events beside another's writes."""

from concurrent.futures import ThreadPoolExecutor

import requests

BAD_EVENTS = [
    '{"type": "p", "metadata": {"s": "\\ud800"}}',
    '{"type": "p", "timestamp": "0001-01-01T00:00:00+01:00"}',
    '{"type": "p", "metadata": {"n": 9223372036854775808}}',
]


def test_a_tenant_posting_bad_events_never_fails_anothers_writes(live_server_factory):
    server = live_server_factory(mode="eventlet")
    attacker = server.create_tenant("attacker")["api_key"]
    victim = server.create_tenant("victim")["api_key"]

    def post_bad(i):
        return requests.post(
            server.url + "/api/v1/events",
            data=BAD_EVENTS[i % len(BAD_EVENTS)].encode(),
            headers={"X-API-Key": attacker, "Content-Type": "application/json"},
            timeout=30,
        ).status_code

    def post_good(i):
        return requests.post(
            server.url + "/api/v1/events",
            json={"type": "ok", "id": f"v{i}"},
            headers={"X-API-Key": victim},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(20) as pool:
        bad = [pool.submit(post_bad, i) for i in range(100)]
        good = [pool.submit(post_good, i) for i in range(400)]
        bad_statuses = {f.result() for f in bad}
        good_statuses = [f.result() for f in good]
    assert bad_statuses == {400}
    assert good_statuses == [201] * 400
    stats = requests.get(
        server.url + "/api/v1/events/stats", headers={"X-API-Key": victim}, timeout=10
    ).json()
    assert stats["total"] == 400
