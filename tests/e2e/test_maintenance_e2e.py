"""The serving process keeps the search index up to date itself (ingest/maintenance.py).

Runs on the local PostgreSQL in every CI run (the search table, its trigger and GIN
pending lists are PostgreSQL's), with pgstattuple to read how many index entries are
still pending.
"""

import time

import psycopg2
import requests

EVENTS = [{"type": "merge.check", "metadata": {"note": f"pending entry {i}"}} for i in range(200)]


def _state(database_url: str) -> tuple[int, int, int]:
    """(events queued for the search table, rows in it, its index's pending pages)."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        cursor.execute(
            "SELECT (SELECT count(*) FROM event_search_pending), "
            "(SELECT count(*) FROM event_search), "
            "(SELECT pending_pages FROM pgstatginindex('ix_event_search_metadata_trgm'))"
        )
        return cursor.fetchone()


def _post_and_search(server, tenant: str = "acme") -> int:
    key = server.create_tenant(tenant)["api_key"]
    assert server.post_events(key, EVENTS).status_code == 201
    found = requests.get(
        server.url + "/api/v1/events?q=PENDING%20ENTRY&limit=500",
        headers={"X-API-Key": key},
        timeout=10,
    )
    return len(found.json()["data"])


def test_the_server_indexes_new_events_and_merges_in_the_background(
    live_server_factory, postgres_database
):
    server = live_server_factory(database_url=postgres_database, SEARCH_INDEX_MERGE_MS="100")
    assert _post_and_search(server) == 200
    deadline = time.monotonic() + 10
    while _state(postgres_database) != (0, 200, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state(postgres_database) == (0, 200, 0)
    assert _post_and_search(server, "globex") == 200  # found while queued, as before


def test_without_the_task_events_stay_queued_and_are_still_found(
    live_server_factory, postgres_database
):
    # The control for the test above: events only leave the queue because of the task.
    server = live_server_factory(database_url=postgres_database, SEARCH_INDEX_MERGE_MS="0")
    assert _post_and_search(server) == 200
    time.sleep(0.5)
    assert _state(postgres_database)[:2] == (200, 0)
