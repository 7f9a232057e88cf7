"""Removing tenant data in bounded batches: deleted tenants, and events past retention.

Each batch is its own short transaction, and the purge pauses between batches as long
as the batch took: one cascading DELETE of a million-event tenant would hold SQLite's
write lock (or PostgreSQL's row locks and I/O) for minutes, and every other tenant's
ingestion with it. Several nodes may purge at once: on PostgreSQL each batch takes its
rows with SKIP LOCKED, on SQLite the database serialises them; deleting a row twice is
harmless either way.
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, select

from ..auth import now
from ..extensions import db, green_process, socketio
from ..models import ApiKey, Event, Tenant, WebhookDelivery, WebhookEndpoint

log = logging.getLogger("ingest.purge")

events = Event.__table__


@dataclass
class PurgeReport:
    tenants_removed: list[int] = field(default_factory=list)
    events_removed: int = 0  # by deletion and retention together


def _batch() -> int:
    return current_app.config["PURGE_BATCH"]


# The share of the time the purge works: it pauses between batches for the rest. A
# quarter instead of a half made no difference measurable in make bench's step 9 (what
# other tenants wait for is one batch's hold of the write lock), only a slower purge.
DUTY_CYCLE = 0.5


def _breathe(started: float) -> None:
    """Pause so that the purge works DUTY_CYCLE of the time, and others the rest."""
    worked = time.monotonic() - started
    socketio.sleep(min(3.0, worked * (1 - DUTY_CYCLE) / DUTY_CYCLE))


@contextmanager
def _purging_connection():
    """A connection for a run of batches; on SQLite, one whose commits stay short.

    Other tenants' writes wait for each batch's hold of the write lock, and on SQLite
    most of it was the commit: its fsync (SQLITE_SYNCHRONOUS=FULL), and now and then
    the automatic WAL checkpoint of the commit that crosses its limit, which a purge,
    writing the WAL fast, triggers often. A purge batch needs neither: lost in a crash,
    it is done again by the next pass. So its connection commits with synchronous=NORMAL
    and without automatic checkpoints, and checkpoints the WAL between batches, after
    its turn (_checkpoint). Both are set on the driver's connection (not through
    SQLAlchemy, which would begin a transaction), and put back before it returns to
    the pool.
    """
    with db.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            raw = connection.connection.dbapi_connection
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute("PRAGMA wal_autocheckpoint=0")
        try:
            yield connection
        finally:
            if sqlite:
                raw.execute(f"PRAGMA synchronous={current_app.config['SQLITE_SYNCHRONOUS']}")
                raw.execute("PRAGMA wal_autocheckpoint=1000")


def _checkpoint(connection) -> None:
    """Move the WAL into the database between batches (SQLite), off the hub."""
    if connection.dialect.name != "sqlite":
        return
    checkpoint = functools.partial(
        connection.connection.dbapi_connection.execute, "PRAGMA wal_checkpoint(PASSIVE)"
    )
    if green_process():
        from eventlet import tpool

        tpool.execute(checkpoint)
    else:
        checkpoint()


def delete_in_batches(table, key, where, batch: int) -> int:
    """DELETE FROM table WHERE where, ``batch`` rows (by ``key``) per transaction."""
    removed = 0
    with _purging_connection() as connection:
        while True:
            started = time.monotonic()
            chosen = select(key).where(where).order_by(key).limit(batch)
            chosen = chosen.with_for_update(skip_locked=True).scalar_subquery()
            with connection.begin():
                count = connection.execute(delete(table).where(key.in_(chosen))).rowcount
            removed += count
            if count < batch:
                return removed
            _checkpoint(connection)
            _breathe(started)


def purge_tenant(tenant_id: int) -> int:
    """Everything of a tenant being deleted, then the tenant itself; returns events removed."""
    batch = _batch()
    removed = delete_in_batches(events, events.c.seq, events.c.tenant_id == tenant_id, batch)
    endpoints = WebhookEndpoint.__table__
    with db.engine.connect() as connection:
        endpoint_ids = list(
            connection.scalars(select(endpoints.c.id).where(endpoints.c.tenant_id == tenant_id))
        )
    deliveries = WebhookDelivery.__table__
    for endpoint_id in endpoint_ids:
        delete_in_batches(
            deliveries, deliveries.c.id, deliveries.c.endpoint_id == endpoint_id, batch
        )
    keys = ApiKey.__table__
    delete_in_batches(keys, keys.c.id, keys.c.tenant_id == tenant_id, batch)
    tenants = Tenant.__table__
    with db.engine.begin() as connection:
        # An insert that passed its credential check before the deletion may have landed
        # since: it goes with the rest (the cascade is at most a group's worth).
        connection.execute(delete(endpoints).where(endpoints.c.tenant_id == tenant_id))
        connection.execute(delete(ApiKey).where(ApiKey.tenant_id == tenant_id))
        connection.execute(
            delete(tenants).where(tenants.c.id == tenant_id, tenants.c.deleting_since.is_not(None))
        )
    log.info("tenant %s deleted: %s events removed", tenant_id, removed)
    return removed


def purge_expired_events(tenant_id: int, cutoff: datetime) -> int:
    """Events of a tenant received before ``cutoff``, oldest first, a batch at a time.

    Storage order follows arrival, so the oldest events are the first rows of the
    tenant's (tenant_id, seq) index: each batch reads at most ``batch`` rows of it and
    stops at the first batch with fewer expired than that, without an index on
    received_at (which every insert would pay for).
    """
    batch = _batch()
    removed = 0
    with _purging_connection() as connection:
        while True:
            started = time.monotonic()
            oldest = (
                select(events.c.seq)
                .where(events.c.tenant_id == tenant_id)
                .order_by(events.c.seq)
                .limit(batch)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            with connection.begin():
                count = connection.execute(
                    delete(events).where(events.c.seq.in_(oldest), events.c.received_at < cutoff)
                ).rowcount
            removed += count
            if count < batch:
                return removed
            _checkpoint(connection)
            _breathe(started)


def _tenants_to_remove() -> list[int]:
    with db.engine.connect() as connection:
        return list(
            connection.scalars(
                select(Tenant.id).where(Tenant.deleting_since.is_not(None)).order_by(Tenant.id)
            )
        )


def _retention_cutoffs(moment: datetime) -> list[tuple[int, datetime]]:
    default_days = current_app.config["DEFAULT_RETENTION_DAYS"]
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(Tenant.id, Tenant.retention_days).where(Tenant.deleting_since.is_(None))
        ).all()
    return [
        (row.id, moment - timedelta(days=days))
        for row in rows
        if (days := row.retention_days or default_days)
    ]


def purge_old_keys(moment: datetime) -> int:
    """Keys revoked or expired more than KEY_HISTORY_DAYS ago: rotating adds a row each
    time, and a tenant rotating all day would otherwise grow its keys without end."""
    keys = ApiKey.__table__
    cutoff = moment - timedelta(days=current_app.config["KEY_HISTORY_DAYS"])
    gone = or_(keys.c.revoked_at < cutoff, keys.c.expires_at < cutoff)
    return delete_in_batches(keys, keys.c.id, gone, _batch())


def run_purge() -> PurgeReport:
    """One pass: tenants being deleted are removed, then events past retention, then keys
    long out of use."""
    report = PurgeReport()
    for tenant_id in _tenants_to_remove():
        report.events_removed += purge_tenant(tenant_id)
        report.tenants_removed.append(tenant_id)
    moment = now()
    for tenant_id, cutoff in _retention_cutoffs(moment):
        expired = purge_expired_events(tenant_id, cutoff)
        if expired:
            log.info("tenant %s: %s events past retention removed", tenant_id, expired)
        report.events_removed += expired
    purge_old_keys(moment)
    return report
