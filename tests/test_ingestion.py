"""Group commit: concurrent requests share transactions, and each still gets its own answer."""

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from ingest.extensions import db
from ingest.services import ingestion
from tests.support import create_tenant, post_events


@pytest.fixture
def gated_store(monkeypatch):
    """Holds the first commit until released, recording the size of every group."""
    release, first_started, groups = threading.Event(), threading.Event(), []
    real_store = ingestion._store

    def store(requests, hooks):
        groups.append(len(requests))
        if len(groups) == 1:
            first_started.set()
            release.wait(10)
        return real_store(requests, hooks)

    monkeypatch.setattr(ingestion, "_store", store)
    yield release, first_started, groups
    release.set()  # a test that failed while holding the first commit lets it go


def _post_in_threads(app, tenant, bodies):
    responses = [None] * len(bodies)

    def post(i):
        responses[i] = app.test_client().post(
            "/api/v1/events", json=bodies[i], headers=tenant["headers"]
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    return threads, responses


def _wait_until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.01)


def _wait_until_queued(app, count):
    waiting = app.extensions["group_commit"]._waiting
    _wait_until(lambda: len(waiting) >= count, f"{count} requests wait for the next commit")


def test_requests_waiting_behind_a_commit_share_the_next_one(app, client, tenant, gated_store):
    release, first_started, groups = gated_store
    leader, leader_responses = _post_in_threads(app, tenant, [{"type": "first", "id": "first"}])
    assert first_started.wait(10)
    followers, responses = _post_in_threads(
        app, tenant, [{"type": "t", "id": f"f{i}"} for i in range(5)]
    )
    _wait_until_queued(app, 5)
    release.set()
    for thread in leader + followers:
        thread.join(10)
    assert groups == [1, 5]
    assert leader_responses[0].status_code == 201
    assert [r.get_json()["id"] for r in responses] == [f"f{i}" for i in range(5)]
    assert all(r.status_code == 201 for r in responses)
    stored = client.get("/api/v1/events?limit=100", headers=tenant["headers"]).get_json()["data"]
    assert sorted(e["id"] for e in stored) == sorted(["first"] + [f"f{i}" for i in range(5)])


def test_same_id_from_two_requests_in_one_group_is_stored_once(app, client, tenant, gated_store):
    release, first_started, _ = gated_store
    leader, _ = _post_in_threads(app, tenant, [{"type": "first"}])
    assert first_started.wait(10)
    followers, responses = _post_in_threads(app, tenant, [{"type": "t", "id": "same"}] * 2)
    _wait_until_queued(app, 2)
    release.set()
    for thread in leader + followers:
        thread.join(10)
    assert sorted(r.status_code for r in responses) == [200, 201]
    assert responses[0].get_json() == responses[1].get_json()


def test_a_conflict_in_a_group_is_retried_request_by_request(app, client, tenant, monkeypatch):
    real_store, calls = ingestion._store, []

    def store(requests, hooks):
        calls.append(len(requests))
        if len(calls) == 1:
            raise IntegrityError("INSERT", {}, Exception("another node stored it first"))
        return real_store(requests, hooks)

    monkeypatch.setattr(ingestion, "_store", store)
    response = post_events(client, tenant, {"type": "a", "id": "x"})
    assert response.status_code == 201
    assert calls == [1, 1]


def test_a_database_failure_fails_the_group_with_503_and_stores_nothing(
    app, client, tenant, monkeypatch
):
    def store(requests, hooks):
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(ingestion, "_store", store)
    response = client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"])
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    monkeypatch.undo()
    assert client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"] == []


def test_many_concurrent_requests_all_commit(app, client, tenant):
    threads, responses = _post_in_threads(
        app, tenant, [{"type": "t", "id": f"c{i}"} for i in range(40)]
    )
    for thread in threads:
        thread.join(30)
    assert all(r.status_code == 201 for r in responses)
    stats = client.get("/api/v1/events/stats", headers=tenant["headers"]).get_json()
    assert stats["total"] == 40


def test_with_group_commit_off_each_request_commits_alone_without_waiting(make_app, gated_store):

    release, first_started, groups = gated_store
    app = make_app(GROUP_COMMIT=False)
    tenant = create_tenant(app.test_client(), "acme")
    first, first_responses = _post_in_threads(app, tenant, [{"type": "first"}])
    assert first_started.wait(10)
    others, responses = _post_in_threads(app, tenant, [{"type": "t"}, {"type": "t"}])
    # While the first commit is held, the others store their events, each on its own.
    _wait_until(lambda: len(groups) == 3, "the other two requests store, one each")
    release.set()
    for thread in first + others:
        thread.join(10)
    assert groups == [1, 1, 1]
    assert [r.status_code for r in first_responses + responses] == [201, 201, 201]


def test_waiting_requests_hold_no_database_connection(make_app, gated_store):
    """A small pool, every request looking its key up: waiting must not starve the leader."""

    release, first_started, groups = gated_store
    app = make_app(
        CREDENTIAL_CACHE_SECONDS=0,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 2, "max_overflow": 0, "pool_timeout": 1},
    )
    tenant = create_tenant(app.test_client(), "acme")
    leader, leader_responses = _post_in_threads(app, tenant, [{"type": "first"}])
    assert first_started.wait(10)
    followers, responses = _post_in_threads(app, tenant, [{"type": "t"}, {"type": "t"}])
    _wait_until_queued(app, 2)
    release.set()
    for thread in leader + followers:
        thread.join(10)
    assert [r.status_code for r in leader_responses + responses] == [201, 201, 201]
    assert groups == [1, 2]


def test_a_lead_interrupted_mid_commit_is_still_handed_on(app, client, tenant, monkeypatch):
    """A leader killed mid-commit (e.g. GreenletExit) must not leave the lead taken."""

    class Interrupted(BaseException):
        pass

    def publish(group):
        raise Interrupted

    monkeypatch.setattr(ingestion.GroupCommitter, "_publish", lambda self, group: publish(group))
    with pytest.raises(Interrupted):
        client.post("/api/v1/events", json={"type": "a"}, headers=tenant["headers"])
    monkeypatch.undo()

    threads, responses = _post_in_threads(app, tenant, [{"type": "b"}])
    threads[0].join(10)
    assert not threads[0].is_alive(), "the next request waited for a lead nobody held"
    assert responses[0].status_code == 201


def test_a_request_the_database_refuses_fails_alone_in_its_commit_group(app, tenant, gated_store):
    """Defence in depth: an event that got past validation but fails in the transaction.

    Its neighbours in the group, another tenant's requests, must all be stored.
    """
    release, first_started, groups = gated_store
    other = create_tenant(app.test_client(), "globex")
    # Year 1 at +01:00 is year 0 in UTC: binding it fails inside the transaction.
    unstorable = {"type": "p", "timestamp": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))}
    outcomes = {}

    def submit(name, tenant_id, items):
        with app.app_context():
            try:
                outcomes[name] = ingestion.ingest_events(tenant_id, items)
            except Exception as error:
                outcomes[name] = error

    leader = threading.Thread(target=submit, args=("leader", other["id"], [{"type": "a"}]))
    leader.start()
    assert first_started.wait(10)
    followers = [("bad", tenant["id"], [unstorable])] + [
        (f"good{i}", other["id"], [{"type": "b", "id": f"g{i}"}]) for i in range(6)
    ]
    threads = [threading.Thread(target=submit, args=args) for args in followers]
    for thread in threads:
        thread.start()
    _wait_until_queued(app, len(followers))
    release.set()
    for thread in [leader, *threads]:
        thread.join(10)

    assert isinstance(outcomes["bad"], Exception)
    assert [outcomes[f"good{i}"].created for i in range(6)] == [[True]] * 6
    assert groups[1] == len(followers)  # they did share one group, and it was split
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM events")).scalar() == 7
