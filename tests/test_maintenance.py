"""Merging the search indexes' pending lists (PostgreSQL), and that `q` still finds it all."""

from ingest.extensions import db
from ingest.maintenance import merge_search_index_pending_lists
from tests.support import post_events


def test_merging_moves_pending_entries_into_the_search_indexes(app, client, tenant):
    events = [{"type": "merge.check", "metadata": {"word": f"zebrafish {i}"}} for i in range(60)]
    assert post_events(client, tenant, *events).status_code == 201
    with app.app_context():
        merged = merge_search_index_pending_lists()
        if db.engine.dialect.name == "postgresql":
            assert merged > 0  # the new entries were pending ...
            assert merge_search_index_pending_lists() == 0  # ... and are not any more
        else:
            assert merged == 0  # SQLite has no such indexes
    found = client.get("/api/v1/events?q=zebrafish&limit=100", headers=tenant["headers"])
    assert len(found.get_json()["data"]) == 60
