"""The delivery worker's reads and writes: endpoints, claims under a lease, outcomes, pruning.

Claims take an endpoint's due deliveries with FOR UPDATE SKIP LOCKED (PostgreSQL) and
move their next_attempt_at to the end of a lease, marked with the claiming round's
token: several workers on several nodes then never take the same delivery while the
lease runs, and a killed worker's deliveries come due again when it ends. Outcomes
are written only where the token still matches, so a worker whose lease ran out
cannot overwrite what another recorded since.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, literal_column, select, update

from ..models import FAILED, PENDING, SUCCEEDED, Event, Tenant, WebhookDelivery, WebhookEndpoint
from ..schemas import event_json
from .sender import Outcome

deliveries = WebhookDelivery.__table__
endpoints = WebhookEndpoint.__table__
# A literal, not a bound parameter: SQLite uses a partial index only for a WHERE term
# that matches its own ("status = 'pending'") as written.
IS_PENDING = deliveries.c.status == literal_column("'pending'")
# A disabled tenant's deliveries wait (and go out when it is enabled again); a deleted
# one's wait for the purge.
_TENANT_ACTIVE = endpoints.c.tenant_id.in_(
    select(Tenant.id).where(Tenant.disabled.is_(False), Tenant.deleting_since.is_(None))
)


@dataclass(frozen=True)
class Target:
    """An enabled endpoint as the worker sends to it."""

    id: int
    tenant_id: int
    url: str
    secrets: tuple[str, ...]  # the current one, then one rotated out that still signs


@dataclass
class Claimed:
    """A delivery this worker holds the lease of, with the body to send."""

    id: int
    endpoint_id: int
    event_id: str
    attempts: int  # before this one
    claim: str
    body: bytes | None = None  # None: its event is no longer stored
    tenant_id: int = 0
    payload: dict | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Result:
    delivery: Claimed
    outcome: Outcome


def due_endpoints(connection, now: datetime) -> list[Target]:
    """Enabled endpoints with a delivery due: one query, an index probe per endpoint.

    Idle rounds stay cheap however many endpoints exist, and a backlog of one endpoint
    (however long) costs one probe, not a scan of its deliveries.
    """
    due = (
        select(deliveries.c.id)
        .where(deliveries.c.endpoint_id == endpoints.c.id, IS_PENDING)
        .where(deliveries.c.next_attempt_at <= now)
        .exists()
    )
    return _targets(connection, now, due)


def enabled_targets(connection, ids: list[int], now: datetime) -> list[Target]:
    """Those of these endpoints still enabled, as they are now (URL, secrets)."""
    return _targets(connection, now, endpoints.c.id.in_(ids))


def _targets(connection, now: datetime, which) -> list[Target]:
    rows = connection.execute(
        select(
            endpoints.c.id,
            endpoints.c.tenant_id,
            endpoints.c.url,
            endpoints.c.secret,
            endpoints.c.previous_secret,
            endpoints.c.previous_secret_until,
        ).where(endpoints.c.enabled, _TENANT_ACTIVE, which)
    )
    return [
        Target(
            row.id,
            row.tenant_id,
            row.url,
            (row.secret,)
            + ((row.previous_secret,) if _still_signs(row.previous_secret_until, now) else ()),
        )
        for row in rows
    ]


def tenants_with_endpoints(connection) -> set[int]:
    return set(
        connection.scalars(
            select(endpoints.c.tenant_id).where(endpoints.c.enabled, _TENANT_ACTIVE).distinct()
        )
    )


def _still_signs(until: datetime | None, now: datetime) -> bool:
    return until is not None and until > now


def claim(
    connection, endpoint_id: int, most: int, now: datetime, lease_until: datetime, token: str
) -> list[Claimed]:
    due = (
        select(deliveries.c.id)
        .where(deliveries.c.endpoint_id == endpoint_id, IS_PENDING)
        .where(deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(most)
        .with_for_update(skip_locked=True)
    )
    rows = connection.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=lease_until, claim=token)
        .returning(
            deliveries.c.id,
            deliveries.c.tenant_id,
            deliveries.c.event_id,
            deliveries.c.attempts,
            deliveries.c.payload,
        )
    )
    return [
        Claimed(
            id=row.id,
            endpoint_id=endpoint_id,
            event_id=row.event_id,
            attempts=row.attempts,
            claim=token,
            tenant_id=row.tenant_id,
            payload=row.payload,
        )
        for row in rows
    ]


def message_body(event_type: str, timestamp: str, data: dict) -> bytes:
    """What a receiver gets: UTF-8 JSON, compact (the bytes the signature covers)."""
    document = {"type": event_type, "timestamp": timestamp, "data": data}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def attach_bodies(connection, claimed: list[Claimed]) -> None:
    """Give each claimed delivery its body, read from its stored event (or its payload)."""
    wanted: dict[int, set[str]] = {}
    for delivery in claimed:
        if delivery.payload is not None:
            payload = delivery.payload
            delivery.body = message_body(payload["type"], payload["timestamp"], payload["data"])
        else:
            wanted.setdefault(delivery.tenant_id, set()).add(delivery.event_id)
    stored: dict[tuple[int, str], bytes] = {}
    events = Event.__table__
    for tenant_id, ids in wanted.items():
        rows = connection.execute(
            select(events).where(events.c.tenant_id == tenant_id, events.c.event_id.in_(ids))
        )
        for row in rows:
            event = event_json(row._asdict())
            stored[(tenant_id, row.event_id)] = message_body(
                event["type"], event["timestamp"], event
            )
    for delivery in claimed:
        if delivery.payload is None:
            delivery.body = stored.get((delivery.tenant_id, delivery.event_id))


@dataclass(frozen=True)
class Policy:
    """When to try again, and when to give an endpoint up."""

    schedule: tuple[float, ...]
    disable_after: timedelta

    def next_attempt(self, attempts_before: int, now: datetime) -> datetime | None:
        """When the next try is due after a failed attempt, or None if that was the last."""
        if attempts_before >= len(self.schedule):
            return None
        # ±10 %: receivers that failed together are not all retried at the same instant.
        delay = self.schedule[attempts_before] * random.uniform(0.9, 1.1)
        return now + timedelta(seconds=delay)


GONE = 410
ERROR_CHARS = WebhookDelivery.last_error.type.length
GONE_REASON = "The endpoint answered 410 Gone."


def _outcome(result: Result, now: datetime, policy: Policy) -> dict:
    """The columns an attempt's outcome sets (attempts and claim aside)."""
    delivery, outcome = result.delivery, result.outcome
    following = None
    if outcome.succeeded:
        status = SUCCEEDED
    else:
        final = delivery.body is None or outcome.status_code == GONE
        following = None if final else policy.next_attempt(delivery.attempts, now)
        status = PENDING if following is not None else FAILED
    return {
        "status": status,
        "last_status_code": outcome.status_code,
        # Clipped to its column: PostgreSQL refuses longer, and a receiver (or its host
        # name) chooses much of an error's text.
        "last_error": outcome.error and outcome.error[:ERROR_CHARS],
        "last_response": outcome.response,
        "next_attempt_at": following,
        "delivered_at": now if status == SUCCEEDED else None,
    }


def record(connection, results: list[Result], now: datetime, policy: Policy) -> None:
    """Write the outcomes, and what they say of their endpoints (failing, gone)."""
    if not results:
        return
    # One UPDATE per claim and distinct outcome, not one per delivery: a receiver's
    # successes mostly read alike, and an executemany costs a round trip per row on
    # psycopg2. (One per outcome with (id, claim) pairs instead planned and ran 3 x
    # slower on PostgreSQL: a row-value IN list becomes an OR of index probes.)
    alike: dict[tuple, list[int]] = {}
    for result in results:
        key = (result.delivery.claim, *_outcome(result, now, policy).items())
        alike.setdefault(key, []).append(result.delivery.id)
    for (claim, *outcome), ids in alike.items():
        connection.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(ids), deliveries.c.claim == claim)
            .values({**dict(outcome), "attempts": deliveries.c.attempts + 1, "claim": None})
        )
    succeeded = {r.delivery.endpoint_id for r in results if r.outcome.succeeded}
    failing = {r.delivery.endpoint_id for r in results} - succeeded
    gone = {r.delivery.endpoint_id for r in results if r.outcome.status_code == GONE}
    if succeeded:
        connection.execute(
            update(endpoints)
            .where(endpoints.c.id.in_(succeeded), endpoints.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
    if failing:
        connection.execute(
            update(endpoints)
            .where(endpoints.c.id.in_(failing), endpoints.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        disable(
            connection,
            endpoints.c.id.in_(failing) & (endpoints.c.failing_since <= now - policy.disable_after),
            f"Every delivery failed for {_duration(policy.disable_after)}.",
        )
    if gone:
        disable(connection, endpoints.c.id.in_(gone), GONE_REASON)


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} s"


def disable(connection, which, reason: str) -> None:
    connection.execute(
        update(endpoints)
        .where(which, endpoints.c.enabled)
        .values(enabled=False, disabled_reason=reason)
    )


def first_id_created_since(connection, when: datetime) -> int:
    """The lowest delivery id created at or after ``when`` (past the last id if none).

    Ids grow with created_at (both are set on insert), so a binary search over the
    primary key finds it in a few dozen reads, where a filter on created_at would read
    every delivery.
    """
    low, high = connection.execute(
        select(func.min(deliveries.c.id), func.max(deliveries.c.id))
    ).one()
    if low is None:
        return 0
    high += 1
    while low < high:
        middle = (low + high) // 2
        row = connection.execute(
            select(deliveries.c.id, deliveries.c.created_at)
            .where(deliveries.c.id >= middle)
            .order_by(deliveries.c.id)
            .limit(1)
        ).first()
        if row is None or row.id >= high:
            high = middle
        elif row.created_at < when:
            low = row.id + 1
        else:
            high = row.id
    return low


def prune(connection, endpoint_id: int, status: str, below_id: int, most: int) -> int:
    """Remove up to ``most`` of an endpoint's deliveries in ``status`` with ids below
    ``below_id``: a range of the (endpoint_id, status, id) index, whatever else is there."""
    old = (
        select(deliveries.c.id)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == status,
            deliveries.c.id < below_id,
        )
        .order_by(deliveries.c.id)
        .limit(most)
    )
    return connection.execute(
        delete(deliveries).where(deliveries.c.id.in_(old.scalar_subquery()))
    ).rowcount


def endpoint_ids(connection) -> list[int]:
    return list(connection.scalars(select(endpoints.c.id)))
