"""Event ingestion, listing, cursors and statistics through the HTTP API."""

import json
import threading
from datetime import UTC, datetime, timedelta

from tests.support import post_events


def _post(client, tenant, body, **kwargs):
    return client.post("/api/v1/events", json=body, headers=tenant["headers"], **kwargs)


def _list(client, tenant, query=""):
    response = client.get(f"/api/v1/events{query}", headers=tenant["headers"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_post_event_returns_the_stored_event(client, tenant):
    response = _post(
        client, tenant, {"type": "user.signup", "metadata": {"plan": "pro", "seats": [1, 2]}}
    )
    assert response.status_code == 201
    event = response.get_json()
    assert set(event) == {"id", "type", "metadata", "timestamp", "received_at"}
    assert event["type"] == "user.signup"
    assert event["metadata"] == {"plan": "pro", "seats": [1, 2]}
    assert event["id"].startswith("evt_")
    assert event["timestamp"] == event["received_at"]
    assert _list(client, tenant)["data"] == [event]


def test_client_timestamp_and_id_are_kept(client, tenant):
    body = {"id": "order-42", "type": "order", "timestamp": "2026-01-02T03:04:05+02:00"}
    event = _post(client, tenant, body).get_json()
    assert event["id"] == "order-42"
    assert datetime.fromisoformat(event["timestamp"]) == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert event["received_at"] != event["timestamp"]


def test_retry_with_same_id_returns_the_stored_event_and_stores_nothing(client, tenant):
    first = _post(client, tenant, {"id": "abc", "type": "a", "metadata": {"n": 1}})
    retry = _post(client, tenant, {"id": "abc", "type": "a", "metadata": {"n": 1}})
    assert first.status_code == 201 and retry.status_code == 200
    assert retry.get_json() == first.get_json()
    assert len(_list(client, tenant)["data"]) == 1


def test_same_client_id_in_two_tenants_is_two_events(client, tenant, other_tenant):
    assert _post(client, tenant, {"id": "x", "type": "a"}).status_code == 201
    assert _post(client, other_tenant, {"id": "x", "type": "b"}).status_code == 201
    assert [e["type"] for e in _list(client, other_tenant)["data"]] == ["b"]


def test_batch_reports_accepted_duplicates_and_ids_in_order(client, tenant):
    _post(client, tenant, {"id": "seen", "type": "a"})
    response = post_events(
        client, tenant, {"type": "b"}, {"id": "seen", "type": "a"}, {"id": "new", "type": "c"}
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["accepted"] == 2 and body["duplicates"] == 1
    assert body["ids"][1:] == ["seen", "new"] and body["ids"][0].startswith("evt_")
    assert len(_list(client, tenant)["data"]) == 3


def test_same_id_twice_in_one_batch_is_stored_once(client, tenant):
    body = post_events(client, tenant, {"id": "d", "type": "a"}, {"id": "d", "type": "a"})
    assert body.get_json() == {"accepted": 1, "duplicates": 1, "ids": ["d", "d"]}


def test_batch_with_one_bad_item_stores_nothing(client, tenant):
    response = post_events(client, tenant, {"type": "ok"}, {"type": "bad type!"}, {"metadata": {}})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["details"]) == {"1", "2"}
    assert "type" in error["details"]["1"] and "type" in error["details"]["2"]
    assert _list(client, tenant)["data"] == []


def test_ndjson_batch(client, tenant):
    lines = [json.dumps({"type": "a", "id": "n1"}), "", json.dumps({"type": "b"})]
    response = client.post(
        "/api/v1/events/batch",
        data="\n".join(lines) + "\n",
        headers={**tenant["headers"], "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201
    assert response.get_json()["accepted"] == 2
    assert [e["type"] for e in _list(client, tenant)["data"]] == ["b", "a"]


def test_ndjson_with_a_broken_line_names_it_and_stores_nothing(client, tenant):
    response = client.post(
        "/api/v1/events/batch",
        data='{"type": "a"}\n{"type": \n',
        headers={**tenant["headers"], "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 400
    details = response.get_json()["error"]["details"]
    assert "Line 2" in details["1"]["_line"][0]
    assert _list(client, tenant)["data"] == []


def test_batch_size_bounds(client, tenant):
    empty = client.post("/api/v1/events/batch", json={"events": []}, headers=tenant["headers"])
    assert empty.status_code == 400
    too_many = post_events(client, tenant, *[{"type": "a"}] * 1001)
    assert too_many.status_code == 400
    assert "1001" in too_many.get_json()["error"]["message"]
    assert post_events(client, tenant, *[{"type": "a"}] * 1000).get_json()["accepted"] == 1000


def test_tenant_comes_from_credentials_not_the_body(client, tenant, other_tenant):
    response = _post(client, tenant, {"type": "a", "tenant_id": other_tenant["id"]})
    assert response.status_code == 400
    assert "tenant_id" in response.get_json()["error"]["details"]
    _post(client, tenant, {"type": "mine"})
    assert _list(client, other_tenant)["data"] == []


def test_tenants_never_see_each_others_events(client, tenant, other_tenant):
    post_events(client, tenant, {"type": "a", "metadata": {"secret": "acme"}})
    post_events(client, other_tenant, {"type": "a", "metadata": {"secret": "globex"}})
    for owner, secret in ((tenant, "acme"), (other_tenant, "globex")):
        events = _list(client, owner)["data"]
        assert [e["metadata"]["secret"] for e in events] == [secret]
        assert _list(client, owner, "?q=acme" if secret == "globex" else "?q=globex")["data"] == []
        stats = client.get("/api/v1/events/stats", headers=owner["headers"]).get_json()
        assert stats["total"] == 1


def test_list_filters_by_type_search_and_time(client, tenant):
    post_events(
        client,
        tenant,
        {"type": "login", "metadata": {"user": "Zoë"}, "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "logout", "metadata": {"user": "bob"}, "timestamp": "2026-01-02T00:00:00Z"},
        {
            "type": "purchase",
            "metadata": {"sku": "100%_cotton"},
            "timestamp": "2026-01-03T00:00:00Z",
        },
    )

    def types(query):
        return [e["type"] for e in _list(client, tenant, query)["data"]]

    assert types("?type=login&type=purchase") == ["purchase", "login"]
    assert types("?q=LOG") == ["logout", "login"]
    assert types("?q=zoë") == ["login"]
    assert types("?q=100%25_") == ["purchase"]
    assert types("?q=%25") == ["purchase"]  # % is searched literally, not as a wildcard
    assert types("?q=_") == ["purchase"]
    assert types("?since=2026-01-02T00:00:00Z") == ["purchase", "logout"]
    assert types("?until=2026-01-02T00:00:00Z") == ["login"]


def test_list_query_errors(client, tenant):
    for query in (
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?cursor=%%%",
        "?cursor=bm9wZQ",
        "?since=yesterday",
        "?since=2026-01-01T00:00:00",  # no offset
        "?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "?colour=red",
    ):
        response = client.get(f"/api/v1/events{query}", headers=tenant["headers"])
        assert response.status_code == 400, query
        assert response.get_json()["error"]["code"] == "validation_error"


def _all_pages(client, tenant, query):
    """Every event id, following next_cursor from the first page to the last."""
    seen, cursor = [], None
    while True:
        page = _list(client, tenant, query + (f"&cursor={cursor}" if cursor else ""))
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_cursor_pages_cover_everything_once(client, tenant):
    post_events(client, tenant, *[{"type": "t", "id": f"e{i}"} for i in range(25)])
    assert _all_pages(client, tenant, "?limit=10") == [f"e{i}" for i in reversed(range(25))]


def test_cursor_pages_neither_skip_nor_repeat_while_events_arrive(app, client, tenant):
    post_events(client, tenant, *[{"type": "old", "id": f"old{i}"} for i in range(60)])
    stop = threading.Event()

    def keep_ingesting():
        writer = app.test_client()
        n = 0
        while not stop.is_set():
            post_events(writer, tenant, {"type": "new", "id": f"new{n}"})
            n += 1

    thread = threading.Thread(target=keep_ingesting)
    thread.start()
    try:
        seen = _all_pages(client, tenant, "?limit=7&type=old")
        unfiltered = _all_pages(client, tenant, "?limit=9")
    finally:
        stop.set()
        thread.join()
    assert seen == [f"old{i}" for i in reversed(range(60))]
    assert len(unfiltered) == len(set(unfiltered))
    assert [i for i in unfiltered if i.startswith("old")] == seen


def test_stats_counts_by_type_and_time_range(client, tenant):
    post_events(
        client,
        tenant,
        {"type": "b", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "a", "timestamp": "2026-01-02T00:00:00Z"},
        {"type": "total", "timestamp": "2026-01-03T00:00:00Z"},
        {"type": "total", "timestamp": "2026-01-04T00:00:00Z"},
    )
    stats = client.get("/api/v1/events/stats", headers=tenant["headers"]).get_json()
    assert stats["total"] == 4
    assert stats["by_type"] == [
        {"type": "total", "count": 2},
        {"type": "a", "count": 1},
        {"type": "b", "count": 1},
    ]
    assert datetime.fromisoformat(stats["first_event_at"]) == datetime(2026, 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(stats["last_event_at"]) == datetime(2026, 1, 4, tzinfo=UTC)
    ranged = client.get(
        "/api/v1/events/stats?since=2026-01-02T00:00:00Z&until=2026-01-04T00:00:00Z",
        headers=tenant["headers"],
    ).get_json()
    assert ranged["total"] == 2
    assert ranged["by_type"] == [{"type": "a", "count": 1}, {"type": "total", "count": 1}]


def test_stats_of_an_empty_tenant(client, tenant):
    stats = client.get("/api/v1/events/stats", headers=tenant["headers"]).get_json()
    assert stats == {"total": 0, "by_type": [], "first_event_at": None, "last_event_at": None}


def test_timeseries_counts_per_minute_with_empty_buckets(client, tenant):
    post_events(
        client,
        tenant,
        {"type": "a", "timestamp": "2026-01-01T10:00:10Z"},
        {"type": "a", "timestamp": "2026-01-01T10:00:50Z"},
        {"type": "a", "timestamp": "2026-01-01T10:02:00Z"},
    )
    response = client.get(
        "/api/v1/events/timeseries?since=2026-01-01T10:00:00Z&until=2026-01-01T10:03:00Z",
        headers=tenant["headers"],
    )
    body = response.get_json()
    assert body["interval"] == "minute"
    assert [b["count"] for b in body["data"]] == [2, 0, 1]
    assert datetime.fromisoformat(body["data"][1]["start"]) == datetime(
        2026, 1, 1, 10, 1, tzinfo=UTC
    )


def test_timeseries_defaults_to_the_last_hour(client, tenant):
    post_events(client, tenant, {"type": "a"})
    body = client.get("/api/v1/events/timeseries", headers=tenant["headers"]).get_json()
    assert 60 <= len(body["data"]) <= 61
    assert sum(b["count"] for b in body["data"]) == 1


def test_timeseries_refuses_too_many_buckets(client, tenant):
    start = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    response = client.get(
        "/api/v1/events/timeseries", query_string={"since": start}, headers=tenant["headers"]
    )
    assert response.status_code == 400


def test_timeseries_ending_within_a_second_lists_the_bucket_of_its_last_events(client, tenant):
    """until=12:00:00.5 leaves 12:00:00.2 inside the range: its bucket must be listed."""
    post_events(client, tenant, {"type": "a", "timestamp": "2026-01-01T12:00:00.200000Z"})
    body = client.get(
        "/api/v1/events/timeseries?since=2026-01-01T11:58:00Z&until=2026-01-01T12:00:00.500000Z",
        headers=tenant["headers"],
    ).get_json()
    assert [b["count"] for b in body["data"]] == [0, 0, 1]
