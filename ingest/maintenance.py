"""Background upkeep of a serving process: the search index (PostgreSQL).

`q` search runs on trigram indexes of event_search (migration 0005). Maintaining them
inside each insert cost ~160 µs of PostgreSQL's CPU per event in the transaction that
every request of a group commit waits on; instead, a trigger queues new events in
event_search_pending, and this task, every SEARCH_INDEX_MERGE_MS on a connection of
its own, moves them into event_search and then merges the trigram indexes' pending
lists (which otherwise merge inside whichever insert outgrows them: ~70 ms stalls,
migration 0004). Several nodes can run it at once: each takes queued events with
SKIP LOCKED. Nothing to do on SQLite.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from flask import Flask
from sqlalchemy import text

from .extensions import db, socketio
from .models import SEARCH_INDEXES
from .outages import Outage

log = logging.getLogger("ingest.maintenance")


# Events moved from the queue into event_search per statement: bounded, so a backlog
# (after downtime, or with the task off for a while) is worked off in short transactions.
INDEX_BATCH = 5000

_INDEX_QUEUED_EVENTS = text(
    """
    WITH taken AS (
        DELETE FROM event_search_pending
        WHERE seq IN (
            SELECT seq FROM event_search_pending ORDER BY seq
            LIMIT :batch FOR UPDATE SKIP LOCKED
        )
        RETURNING seq
    ), indexed AS (
        INSERT INTO event_search (seq, tenant_id, type_text, metadata_text)
        SELECT e.seq, e.tenant_id, e.type, CAST(e.metadata AS TEXT)
        FROM events e JOIN taken USING (seq)
        ON CONFLICT (seq) DO NOTHING
    )
    SELECT count(*) FROM taken
    """
)


@contextmanager
def _search_connection():
    """An autocommit connection of the task's own on PostgreSQL; None elsewhere."""
    if db.engine.dialect.name != "postgresql":
        yield None
        return
    with db.engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def _index_queued(connection) -> int:
    taken = 0
    while True:
        batch = connection.scalar(_INDEX_QUEUED_EVENTS, {"batch": INDEX_BATCH})
        taken += batch
        if batch < INDEX_BATCH:
            return taken


def _merge_pending(connection) -> int:
    return sum(
        connection.scalar(
            text("SELECT gin_clean_pending_list(CAST(:index AS regclass))"), {"index": index}
        )
        for index in SEARCH_INDEXES
    )


def update_search_index() -> None:
    """One round of the task, on one connection: queued events in, pending lists merged."""
    with _search_connection() as connection:
        if connection is not None:
            _index_queued(connection)
            _merge_pending(connection)


def start(app: Flask) -> None:
    """Start the search index task in this process, where it applies (PostgreSQL, interval > 0)."""
    interval_ms = app.config["SEARCH_INDEX_MERGE_MS"]
    with app.app_context():
        dialect = db.engine.dialect.name
    if dialect != "postgresql":
        return
    if interval_ms:
        socketio.start_background_task(_update_forever, app, interval_ms / 1000)
    else:
        # Before migration 0005, 0 meant "merge inside the inserts", which was safe.
        log.warning(
            "SEARCH_INDEX_MERGE_MS=0: this node does not index new events for search; "
            "unless another node does, every q search scans a growing queue"
        )


def _update_forever(app: Flask, interval: float) -> None:
    # The database away (ingestion answers 503 meanwhile): said once each way; queued
    # events stay queued, and searches scan them meanwhile.
    outage = Outage(
        log, "updating the search index failed: %s", "updating the search index works again"
    )
    while True:
        socketio.sleep(interval)
        try:
            with app.app_context():
                update_search_index()
        except Exception as error:
            outage.failed(error)
        else:
            outage.succeeded()
