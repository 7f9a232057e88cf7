"""Background upkeep of a serving process: merging the search indexes' pending lists.

PostgreSQL's trigram indexes (migration 0002) take new entries into a pending list and
merge it into the index when it outgrows its limit, inside whichever insert outgrew it:
a group commit then waited ~70 ms and the merge's CPU sat on the ingest path
(`make bench`: single-event ingest 0.49 -> ~0.57 x ceiling, p99 at 500 events/s
37 ms -> 9 ms with the merge moved here). Migration 0004 makes the lists large, and
this task merges them every SEARCH_INDEX_MERGE_MS on a connection of its own, so the
merge runs on another database backend beside ingestion, and `q` searches never scan
more than a moment's worth of pending entries. Nothing to do on SQLite.
"""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy import text

from .extensions import db, socketio
from .models import SEARCH_INDEXES

log = logging.getLogger("ingest.maintenance")


def merge_search_index_pending_lists() -> int:
    """Move pending entries into the trigram indexes now; pending pages merged."""
    if db.engine.dialect.name != "postgresql":
        return 0
    merged = 0
    with db.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        for index in SEARCH_INDEXES:
            merged += connection.scalar(
                text("SELECT gin_clean_pending_list(CAST(:index AS regclass))"),
                {"index": index},
            )
    return merged


def start(app: Flask) -> None:
    """Start the merge task in this process, where it applies (PostgreSQL, interval > 0)."""
    interval_ms = app.config["SEARCH_INDEX_MERGE_MS"]
    with app.app_context():
        dialect = db.engine.dialect.name
    if interval_ms and dialect == "postgresql":
        socketio.start_background_task(_merge_forever, app, interval_ms / 1000)


def _merge_forever(app: Flask, interval: float) -> None:
    failing = False
    while True:
        socketio.sleep(interval)
        try:
            with app.app_context():
                merge_search_index_pending_lists()
        except Exception as error:
            # The database is away (ingestion answers 503 meanwhile): say so once and
            # keep trying; a full list still merges itself inside an insert.
            if not failing:
                log.warning("merging the search indexes' pending lists failed: %s", error)
            failing = True
        else:
            if failing:
                log.info("merging the search indexes' pending lists works again")
            failing = False
