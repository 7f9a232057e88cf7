"""Webhook use cases: endpoints, secrets, deliveries, replays, and queueing new events.

Deliveries of stored events are queued by queue_deliveries, inside the transaction
that stores the events (the group commit calls it): a 201 therefore means the
deliveries exist too, and a crash after it loses none. ingest/deliveries sends them.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from ..auth import HTTP_REFUSALS
from ..deliveries import addresses, signing
from ..errors import AuthenticationFailed, Conflict, NotFound, ValidationError
from ..extensions import db
from ..models import PENDING, STATUSES, Event, Tenant, WebhookDelivery, WebhookEndpoint, utcnow
from .events import decode_cursor, encode_cursor

deliveries = WebhookDelivery.__table__
endpoints = WebhookEndpoint.__table__

# Events read per transaction by a replay; deliveries removed per transaction by a delete.
REPLAY_BATCH = 5000
REPLAY_WHEN_PENDING_BELOW = 100_000
DELETE_BATCH = 5000
_DELIVERY_ID = re.compile(r"dlv_([0-9]{1,18})\Z")
_ENDPOINT_ID = re.compile(r"wh_[A-Za-z0-9_-]{1,37}\Z")
TEST_TYPE = "webhook.test"


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once, and again only on rotation


def _worker():
    return current_app.extensions["webhook_worker"]


def _check_url(url: str) -> None:
    """400 for a URL that may never receive webhooks (the sender checks again each time)."""
    try:
        _scheme, host, port = addresses.check_url(url)
        if current_app.config["WEBHOOK_ALLOW_PRIVATE"]:
            return
        try:
            resolved = addresses.resolve(host, port)
        except UnicodeError:
            raise addresses.AddressRefused(f"{host} is not a valid host name.") from None
        except OSError:
            # Not in DNS yet is allowed: sends are checked against what it resolves to then.
            return
        addresses.refuse_private(host, resolved)
    except addresses.AddressRefused as refused:
        raise ValidationError(
            "The webhook URL is refused.", details={"url": [str(refused)]}
        ) from None


# --- endpoints ---------------------------------------------------------------------------------


def create_endpoint(tenant_id: int, fields: dict) -> CreatedEndpoint:
    _check_url(fields["url"])
    secret = signing.new_secret()
    most = current_app.config["WEBHOOK_MAX_PER_TENANT"]
    with db.engine.begin() as connection:
        # Concurrent creations queue on the tenant's row (PostgreSQL; SQLite has one writer).
        # FOR NO KEY UPDATE: it queues creators, not the tenant's ingestion (whose foreign
        # key checks take FOR KEY SHARE on the same row).
        tenant = connection.execute(
            select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True)
        )
        if tenant.first() is None:  # removed since its credentials were checked (and cached)
            raise AuthenticationFailed(HTTP_REFUSALS.invalid)
        public_id = "wh_" + secrets.token_urlsafe(12)
        connection.execute(
            insert(endpoints).values(
                public_id=public_id,
                tenant_id=tenant_id,
                url=fields["url"],
                types=sorted(set(fields["types"])),
                description=fields["description"],
                enabled=True,
                secret=secret,
                created_at=utcnow(),
            )
        )
        count = connection.scalar(
            select(func.count()).select_from(endpoints).where(endpoints.c.tenant_id == tenant_id)
        )
        if count > most:
            raise Conflict(f"A tenant has at most {most} webhook endpoints; delete one first.")
    _worker().endpoints_changed(tenant_id)
    return CreatedEndpoint(get_endpoint(tenant_id, public_id), secret)


def list_endpoints(tenant_id: int) -> list[WebhookEndpoint]:
    return list(
        db.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.tenant_id == tenant_id)
            .order_by(WebhookEndpoint.id)
        )
    )


def get_endpoint(tenant_id: int, public_id: str) -> WebhookEndpoint:
    """The tenant's endpoint; another tenant's looks exactly like a missing one."""
    if not _ENDPOINT_ID.match(public_id):
        raise _not_found(public_id)  # not one of ours (and never sent to the database)
    endpoint = db.session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.public_id == public_id, WebhookEndpoint.tenant_id == tenant_id
        )
    )
    if endpoint is None:
        raise _not_found(public_id)
    return endpoint


def _not_found(public_id: str) -> NotFound:
    return NotFound(f"No webhook endpoint {public_id!r}.")


def update_endpoint(tenant_id: int, public_id: str, fields: dict) -> WebhookEndpoint:
    endpoint = get_endpoint(tenant_id, public_id)
    if "url" in fields:
        _check_url(fields["url"])
        endpoint.url = fields["url"]
    if "types" in fields:
        endpoint.types = sorted(set(fields["types"]))
    if "description" in fields:
        endpoint.description = fields["description"]
    if fields.get("enabled") is True and not endpoint.enabled:
        # A fresh start: the days it failed before were not its fault now being fixed.
        endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since = True, None, None
    elif fields.get("enabled") is False and endpoint.enabled:
        endpoint.enabled, endpoint.disabled_reason = False, "Disabled through the API."
    _commit_unless_deleted(public_id, endpoint)
    _worker().endpoints_changed(tenant_id)
    return endpoint


def _commit_unless_deleted(public_id: str, written) -> None:
    """Commit the session's change to an endpoint; 404 if it was deleted meanwhile."""
    try:
        db.session.commit()
        db.session.refresh(written)  # what the answer shows, read back
    except (StaleDataError, IntegrityError, ObjectDeletedError, InvalidRequestError):
        # The row went between reading and writing: an update matched nothing, a
        # delivery queued for it failed its foreign key, or there is nothing to read back.
        db.session.rollback()
        raise _not_found(public_id) from None


def delete_endpoint(tenant_id: int, public_id: str) -> None:
    """Remove the endpoint and its deliveries, a bounded batch per transaction.

    One cascading delete of a long delivery log would hold SQLite's write lock (or the
    endpoint's row lock, which the group commit's inserts wait on) for all of it, and
    every tenant's ingestion with it. Disabled first, so nothing new is queued for it
    meanwhile; a delete interrupted halfway leaves it disabled, to be deleted again.
    """
    endpoint = get_endpoint(tenant_id, public_id)
    endpoint_id = endpoint.id
    endpoint.enabled, endpoint.disabled_reason = False, "Being deleted."
    db.session.commit()
    db.session.close()
    while True:
        with db.engine.begin() as connection:
            batch = select(deliveries.c.id).where(deliveries.c.endpoint_id == endpoint_id)
            removed = connection.execute(
                delete(deliveries).where(
                    deliveries.c.id.in_(batch.limit(DELETE_BATCH).scalar_subquery())
                )
            ).rowcount
        if removed < DELETE_BATCH:
            break
        time.sleep(0)  # under eventlet, let other requests run between batches
    with db.engine.begin() as connection:
        connection.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))


def rotate_secret(tenant_id: int, public_id: str) -> str:
    """A new secret; the one it replaces signs beside it for WEBHOOK_SECRET_GRACE_S."""
    endpoint = get_endpoint(tenant_id, public_id)
    grace = current_app.config["WEBHOOK_SECRET_GRACE_S"]
    secret = signing.new_secret()
    # One statement: the secret it replaces is the one stored at that moment, whatever
    # a concurrent rotation did, and the answer is the secret written.
    rotated = db.session.execute(
        update(endpoints)
        .where(endpoints.c.id == endpoint.id)
        .values(
            secret=secret,
            previous_secret=endpoints.c.secret if grace else None,
            previous_secret_until=utcnow() + timedelta(seconds=grace) if grace else None,
        )
    ).rowcount
    db.session.commit()
    if not rotated:
        raise _not_found(public_id)
    return secret


# --- deliveries --------------------------------------------------------------------------------


def _enabled_endpoint(tenant_id: int, public_id: str) -> WebhookEndpoint:
    endpoint = get_endpoint(tenant_id, public_id)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it first (PATCH enabled=true).")
    return endpoint


def send_test(tenant_id: int, public_id: str) -> WebhookDelivery:
    """Queue a webhook.test message, sent, signed and retried like any event."""
    endpoint = _enabled_endpoint(tenant_id, public_id)
    now = utcnow()
    message_id = "test_" + secrets.token_urlsafe(12)
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        tenant_id=tenant_id,
        event_id=message_id,
        payload={
            "type": TEST_TYPE,
            "timestamp": now.isoformat(),
            "data": {"id": message_id, "webhook": endpoint.public_id, "message": "A test."},
        },
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    db.session.add(delivery)
    _commit_unless_deleted(public_id, delivery)
    _worker().wake()
    return delivery


def list_deliveries(
    tenant_id: int, public_id: str, status: str | None, limit: int, cursor: str | None
) -> tuple[list[WebhookDelivery], str | None]:
    """A page of the endpoint's deliveries, newest first, and the cursor of the next.

    Read per status from the (endpoint_id, status, id) index, newest first, and merged:
    each read is a range of the index however the statuses are mixed (a status that is
    rare among millions of deliveries is not looked for row by row).
    """
    endpoint = get_endpoint(tenant_id, public_id)
    before = decode_cursor(cursor) if cursor is not None else None
    page: list[WebhookDelivery] = []
    for each in [status] if status is not None else STATUSES:
        query = select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == each
        )
        if before is not None:
            query = query.where(WebhookDelivery.id < before)
        page += db.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1))
    page.sort(key=lambda delivery: delivery.id, reverse=True)
    more = len(page) > limit
    page = page[:limit]
    return page, encode_cursor(page[-1].id) if more else None


def retry_delivery(tenant_id: int, public_id: str, delivery_id: str) -> None:
    """Send a delivery again now, whatever its state (a lease it was under is dropped)."""
    endpoint = _enabled_endpoint(tenant_id, public_id)
    match = _DELIVERY_ID.match(delivery_id)
    retried = (
        match is not None
        and db.session.execute(
            update(deliveries)
            .where(deliveries.c.id == int(match.group(1)), deliveries.c.endpoint_id == endpoint.id)
            .values(status=PENDING, next_attempt_at=utcnow(), claim=None)
        ).rowcount
    )
    db.session.commit()
    if not retried:
        raise NotFound(f"No delivery {delivery_id!r} for this endpoint.")
    _worker().wake()


def replay(tenant_id: int, public_id: str, since: datetime) -> int:
    """Queue again every matching event stored since then; how many were queued.

    In transactions of REPLAY_BATCH events: a replay of millions must not hold the
    database's write lock (SQLite) for the length of all of them. Events stored after
    the replay started are delivered as usual, not by it.

    Refused while the endpoint has REPLAY_WHEN_PENDING_BELOW deliveries pending or more:
    each replay queues another copy of the tenant's events, and copies without end
    would grow the database and the delivery work for everyone.
    """
    endpoint = _enabled_endpoint(tenant_id, public_id)
    pending = db.session.scalar(
        select(func.count()).select_from(
            select(deliveries.c.id)
            .where(deliveries.c.endpoint_id == endpoint.id, deliveries.c.status == PENDING)
            .limit(REPLAY_WHEN_PENDING_BELOW)
            .subquery()
        )
    )
    if pending >= REPLAY_WHEN_PENDING_BELOW:
        raise Conflict(
            f"The endpoint has {REPLAY_WHEN_PENDING_BELOW:,} or more deliveries pending; "
            "replay once they are sent."
        )
    events = Event.__table__
    matching = select(events.c.seq, events.c.event_id).where(
        events.c.tenant_id == tenant_id, events.c.received_at >= since
    )
    if endpoint.types:
        matching = matching.where(events.c.type.in_(endpoint.types))
    db.session.close()
    with db.engine.connect() as connection:
        last = connection.scalar(
            select(func.max(events.c.seq)).where(events.c.tenant_id == tenant_id)
        )
    queued, after = 0, 0
    while last is not None:
        with db.engine.begin() as connection:
            rows = connection.execute(
                matching.where(events.c.seq > after, events.c.seq <= last)
                .order_by(events.c.seq)
                .limit(REPLAY_BATCH)
            ).all()
            if not rows:
                break
            now = utcnow()
            try:
                connection.execute(
                    insert(deliveries),
                    [_pending(endpoint.id, tenant_id, row.event_id, now) for row in rows],
                )
            except IntegrityError:  # the endpoint was deleted meanwhile
                raise _not_found(public_id) from None
        queued += len(rows)
        after = rows[-1].seq
        _worker().wake()
    return queued


def _pending(endpoint_id: int, tenant_id: int, event_id: str, now: datetime) -> dict:
    return {
        "endpoint_id": endpoint_id,
        "tenant_id": tenant_id,
        "event_id": event_id,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


# --- the group commit's part -------------------------------------------------------------------


def queue_deliveries(connection, rows: list[dict]) -> None:
    """Queue a delivery of each new event to each enabled endpoint that wants its type.

    Called inside the transaction that inserts ``rows`` (as inserted): one query for
    the group's endpoints, one insert for its deliveries, nothing for tenants without
    endpoints.
    """
    tenants = {row["tenant_id"] for row in rows}
    wanting: dict[int, list] = {}
    for endpoint in connection.execute(
        select(endpoints.c.id, endpoints.c.tenant_id, endpoints.c.types).where(
            endpoints.c.tenant_id.in_(tenants), endpoints.c.enabled
        )
    ):
        wanting.setdefault(endpoint.tenant_id, []).append(endpoint)
    if not wanting:
        return
    queued = [
        _pending(endpoint.id, row["tenant_id"], row["event_id"], row["received_at"])
        for row in rows
        for endpoint in wanting.get(row["tenant_id"], ())
        if not endpoint.types or row["type"] in endpoint.types
    ]
    if queued:
        connection.execute(insert(deliveries), queued)
