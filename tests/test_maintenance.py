"""The search index's upkeep (PostgreSQL): `q` finds every event before and after it runs.

The search table, its queue and the trigram indexes' pending lists are PostgreSQL's, so
these tests run there whatever database the rest of the suite uses.
"""

import pytest
from sqlalchemy import delete, func, select, text

from ingest import maintenance
from ingest.extensions import db
from ingest.models import SEARCH_INDEXES, Event, EventSearch, EventSearchPending
from tests.support import post_events


@pytest.fixture
def app(make_app, postgres_url):
    return make_app(database_url=postgres_url)


def _search(client, tenant, q: str) -> list[str]:
    response = client.get(f"/api/v1/events?q={q}&limit=1000", headers=tenant["headers"])
    assert response.status_code == 200
    return sorted(event["metadata"]["word"] for event in response.get_json()["data"])


def _counts(app) -> tuple[int, int]:
    """(events queued for the search table, rows in it)."""
    with app.app_context():
        queued = db.session.scalar(select(func.count()).select_from(EventSearchPending))
        indexed = db.session.scalar(select(func.count()).select_from(EventSearch))
        db.session.remove()
    return queued, indexed


def _pending_pages(app) -> int:
    """Pages in the trigram indexes' pending lists, not merged into the indexes yet."""
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))
        return sum(
            connection.scalar(
                text("SELECT pending_pages FROM pgstatginindex(CAST(:index AS regclass))"),
                {"index": index},
            )
            for index in SEARCH_INDEXES
        )


def _update(app) -> None:
    """One round of the serving process's search index task."""
    with app.app_context():
        maintenance.update_search_index()


def _post(client, tenant, word: str, count: int, start: int = 0):
    events = [{"type": "merge.check", "metadata": {"word": f"{word} {i}"}} for i in range(count)]
    assert post_events(client, tenant, *events[start:]).status_code == 201
    return sorted(e["metadata"]["word"] for e in events[start:])


def test_queued_events_move_into_the_search_table_and_are_found_all_along(app, client, tenant):
    first = _post(client, tenant, "zebrafish", 60)
    assert _counts(app) == (60, 0)
    assert _search(client, tenant, "ZEBRAFISH") == first  # found while only queued
    _update(app)
    assert _counts(app) == (0, 60)
    assert _pending_pages(app) == 0  # the new index entries are merged, not left pending
    assert _search(client, tenant, "zebrafish") == first  # found through the index
    more = _post(client, tenant, "zebrafish", 65, start=60)
    assert _counts(app) == (5, 60)
    assert _search(client, tenant, "zebrafish") == sorted(first + more)  # both at once


def test_a_search_never_crosses_tenants_indexed_or_queued(app, client, tenant, other_tenant):
    ours = _post(client, tenant, "kumquat acme", 3)
    theirs = _post(client, other_tenant, "kumquat globex", 4)
    for _ in range(2):  # queued, then indexed
        assert _search(client, tenant, "kumquat") == ours
        assert _search(client, other_tenant, "kumquat") == theirs
        _update(app)
    assert _counts(app) == (0, 7)


def test_a_backlog_is_taken_in_bounded_batches(app, client, tenant, monkeypatch):
    monkeypatch.setattr(maintenance, "INDEX_BATCH", 7)
    _post(client, tenant, "backlog", 20)
    _update(app)
    assert _counts(app) == (0, 20)


def test_an_event_deleted_while_queued_just_leaves_the_queue(app, client, tenant):
    _post(client, tenant, "fleeting", 5)
    with app.app_context():
        db.session.execute(delete(Event))
        db.session.commit()
    _update(app)
    assert _counts(app) == (0, 0)


def _pages(client, tenant, query: str) -> list[str]:
    """Every page of a listing, followed by cursor; the words in the order served."""
    words, url = [], f"/api/v1/events?{query}&limit=7"
    while url:
        body = client.get(url, headers=tenant["headers"]).get_json()
        words += [event["metadata"]["word"] for event in body["data"]]
        url = body["next_cursor"] and f"/api/v1/events?{query}&limit=7&cursor={body['next_cursor']}"
    return words


def test_search_pages_cover_indexed_and_queued_events_with_every_filter(app, client, tenant):
    from datetime import UTC, datetime, timedelta

    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    events = [
        {
            "type": "kind.even" if i % 2 == 0 else "kind.odd",
            "metadata": {"word": f"{'needle' if i % 3 else 'hay'} {i:02d}"},
            **({"timestamp": old} if i < 10 else {}),
        }
        for i in range(40)
    ]
    assert post_events(client, tenant, *events[:25]).status_code == 201
    _update(app)
    assert post_events(client, tenant, *events[25:]).status_code == 201  # these stay queued

    def expected(keep) -> list[str]:
        chosen = [e["metadata"]["word"] for i, e in enumerate(events) if keep(i, e)]
        return list(reversed(chosen))  # newest stored first

    def needle(i, e):
        return "needle" in e["metadata"]["word"]

    since = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+", "%2B")
    assert _pages(client, tenant, "q=needle") == expected(needle)
    assert _pages(client, tenant, "q=needle&type=kind.odd") == expected(
        lambda i, e: needle(i, e) and e["type"] == "kind.odd"
    )
    assert _pages(client, tenant, f"q=needle&since={since}") == expected(
        lambda i, e: needle(i, e) and i >= 10
    )
