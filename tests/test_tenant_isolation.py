"""One tenant's payload or mistake never fails another's request, nor leaks into it."""

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from ingest.extensions import db
from tests.support import create_tenant

BAD_EVENTS = [
    '{"type": "p", "metadata": {"s": "\\ud800"}}',
    '{"type": "p", "timestamp": "0001-01-01T00:00:00+01:00"}',
]


def test_bad_events_of_one_tenant_never_fail_anothers_concurrent_writes(app, tenant, other_tenant):
    """The loopback attack: A posts unstorable events from 4 threads, B valid ones from 16."""

    def post_bad(i):
        return app.test_client().post(
            "/api/v1/events",
            data=BAD_EVENTS[i % 2],
            headers={**tenant["headers"], "Content-Type": "application/json"},
        )

    def post_good(i):
        return app.test_client().post(
            "/api/v1/events", json={"type": "ok", "id": f"b{i}"}, headers=other_tenant["headers"]
        )

    with ThreadPoolExecutor(20) as pool:
        bad = [pool.submit(post_bad, i) for i in range(40)]
        good = [pool.submit(post_good, i) for i in range(160)]
        bad_statuses = [f.result().status_code for f in bad]
        good_statuses = [f.result().status_code for f in good]
    assert set(bad_statuses) == {400}
    assert good_statuses == [201] * 160
    stats = app.test_client().get("/api/v1/events/stats", headers=other_tenant["headers"])
    assert stats.get_json()["total"] == 160


def test_a_removed_tenants_cached_key_is_refused_from_its_next_write(app, client, tenant):
    assert client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"]).status_code
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("DELETE FROM events"))
        connection.execute(text("DELETE FROM tenants"))
    write = client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"])
    assert write.status_code == 401
    assert write.get_json()["error"]["code"] == "authentication_failed"
    # The cache forgot the tenant: reads are refused too, at once.
    assert client.get("/api/v1/events", headers=tenant["headers"]).status_code == 401


def test_search_folds_non_ascii_case_on_every_backend(client, tenant):
    for name in ("ÉCOLE normale", "école primaire", "college"):
        client.post(
            "/api/v1/events",
            json={"type": "s", "metadata": {"name": name}},
            headers=tenant["headers"],
        )
    for q in ("école", "ÉCOLE", "éCoLe"):
        found = client.get(f"/api/v1/events?q={q}", headers=tenant["headers"]).get_json()["data"]
        assert sorted(e["metadata"]["name"] for e in found) == ["ÉCOLE normale", "école primaire"]


def test_tenant_ids_are_not_reused_after_the_newest_is_removed(app, client):
    first = create_tenant(client, "first")
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("DELETE FROM tenants WHERE id = :id"), {"id": first["id"]})
    assert create_tenant(client, "second")["id"] > first["id"]
