"""The serving process merges the search indexes' pending lists itself.

Runs on the local PostgreSQL in every CI run (pending lists are a GIN feature), with
pgstattuple to read how many entries are still pending.
"""

import time

import psycopg2

EVENTS = [{"type": "merge.check", "metadata": {"note": f"pending entry {i}"}} for i in range(200)]


def _pending_pages(database_url: str) -> int:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        cursor.execute("SELECT pending_pages FROM pgstatginindex('ix_events_metadata_trgm')")
        return cursor.fetchone()[0]


def _post(server) -> None:
    key = server.create_tenant("acme")["api_key"]
    assert server.post_events(key, EVENTS).status_code == 201


def test_the_server_merges_pending_search_entries_in_the_background(
    live_server_factory, postgres_database
):
    server = live_server_factory(database_url=postgres_database, SEARCH_INDEX_MERGE_MS="100")
    _post(server)
    deadline = time.monotonic() + 10
    while _pending_pages(postgres_database) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pending_pages(postgres_database) == 0


def test_without_the_merge_task_the_entries_stay_pending(live_server_factory, postgres_database):
    # The control for the test above: the entries only leave the list because of the task.
    server = live_server_factory(database_url=postgres_database, SEARCH_INDEX_MERGE_MS="0")
    _post(server)
    time.sleep(0.5)
    assert _pending_pages(postgres_database) > 0
