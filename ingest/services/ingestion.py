"""Ingesting events: idempotent, all-or-nothing per request, committed in groups.

Committing is the expensive part of ingestion (an fsync on SQLite, a round trip and
a WAL flush on PostgreSQL). Concurrent requests therefore share commits: the first
request to arrive leads a group, takes every request waiting at that moment, stores
them all in one transaction, publishes the new events, wakes each request with its
own result, and hands the lead to the next waiting request. Every request still
answers only after the commit that stored its events, so a 201 always means durable.

Tenants share those commits, so one request's failure must not become its
neighbours': a group whose transaction fails for any reason but a lost database is
split in halves and each half retried, down to the one request at fault.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..auth import HTTP_REFUSALS
from ..errors import AuthenticationFailed, database_unavailable
from ..extensions import db, green_process
from ..models import Event, Tenant, utcnow
from ..schemas import event_json


@dataclass
class IngestResult:
    """What happened to each submitted event, in request order (as the API shows them)."""

    events: list[dict]
    created: list[bool]

    @property
    def accepted(self) -> int:
        return sum(self.created)

    @property
    def duplicates(self) -> int:
        return len(self.created) - self.accepted

    @property
    def new_events(self) -> list[dict]:
        return [event for event, new in zip(self.events, self.created, strict=True) if new]


def new_event_id() -> str:
    return "evt_" + secrets.token_urlsafe(16)


def _signal_type() -> type:
    """What a request waits on: threading.Event, or under eventlet its own lighter Event.

    threading.Event under eventlet's monkey-patching is a Condition over green locks;
    a set-and-wait through it cost ~23 µs of CPU against ~7 µs for eventlet's Event,
    once per ingest request (make bench).
    """
    if not green_process():
        return threading.Event
    from eventlet.event import Event

    class GreenSignal(Event):
        def set(self) -> None:
            # A successor is woken to lead, then again with its group: once is enough.
            if not self.ready():
                self.send()

    return GreenSignal


@dataclass
class _Request:
    tenant_id: int
    items: list[dict]
    woken: threading.Event  # or _signal_type()'s green equivalent
    leads: bool = False
    result: IngestResult | None = None
    error: BaseException | None = None


def _stored_events(connection, requests: Iterable[_Request]) -> dict[tuple[int, str], dict]:
    """Events already stored under the client ids these requests carry."""
    wanted: dict[int, set[str]] = {}
    for request in requests:
        ids = {item["id"] for item in request.items if "id" in item}
        if ids:
            wanted.setdefault(request.tenant_id, set()).update(ids)
    found = {}
    events = Event.__table__
    for tenant_id, ids in wanted.items():
        rows = connection.execute(
            select(events).where(events.c.tenant_id == tenant_id, events.c.event_id.in_(ids))
        )
        found.update({(tenant_id, row.event_id): event_json(row._asdict()) for row in rows})
    return found


# Called inside the transaction with the rows it inserted (webhook deliveries are
# queued there), and after the commit with each tenant's new events (Socket.IO, the
# webhook worker's wakeup). Registered by the app factory.
StoreHook = Callable[[object, list[dict]], None]
Subscriber = Callable[[int, list[dict]], None]


def _store(requests: list[_Request], hooks: list[StoreHook]) -> list[IngestResult]:
    """Store every request's events in one transaction; same-id events are stored once.

    Through a Core connection rather than the ORM session: nothing here needs the
    session's identity map, and creating, committing and closing one per group cost
    ~5% of a single-event request. Leaving the block rolls back on any error.
    """
    with db.engine.begin() as connection:
        results, rows = _store_in(connection, requests)
        if rows:
            for hook in hooks:
                hook(connection, rows)
        return results


def _store_in(connection, requests: list[_Request]) -> tuple[list[IngestResult], list[dict]]:
    now = utcnow()
    known = _stored_events(connection, requests)
    rows, results = [], []
    for request in requests:
        events, created = [], []
        for item in request.items:
            event_id = item.get("id") or new_event_id()
            key = (request.tenant_id, event_id)
            if key in known:
                # An idempotent retry, or the same id twice in one group: stored once.
                events.append(known[key])
                created.append(False)
                continue
            row = {
                "tenant_id": request.tenant_id,
                "event_id": event_id,
                "type": item["type"],
                "metadata": item.get("metadata", {}),
                "timestamp": item.get("timestamp") or now,
                "received_at": now,
            }
            rows.append(row)
            known[key] = event_json(row)
            events.append(known[key])
            created.append(True)
        results.append(IngestResult(events=events, created=created))
    if rows:
        connection.execute(insert(Event.__table__), rows)
    return results, rows


def _store_isolating(
    group: list[_Request], hooks: list[StoreHook]
) -> list[IngestResult | BaseException]:
    """Store the group; if that fails, store its halves apart, down to the request at fault.

    Only a lost database fails every request at once: nothing else that goes wrong
    in a transaction is known not to be one request's doing (a value the driver
    refuses, a constraint), and its neighbours must not pay for it.
    """
    try:
        return _store(group, hooks)
    except Exception as error:
        if database_unavailable(error):
            return [error] * len(group)
        if len(group) == 1:
            return [_store_again(group[0], error, hooks)]
    middle = len(group) // 2
    return _store_isolating(group[:middle], hooks) + _store_isolating(group[middle:], hooks)


def _store_again(
    request: _Request, error: Exception, hooks: list[StoreHook]
) -> IngestResult | BaseException:
    """One request whose transaction failed: retry a conflict once, else explain it."""
    if isinstance(error, IntegrityError):
        # A concurrent writer elsewhere stored one of these ids between our lookup and
        # our commit; the unique constraint caught it, and a second try sees a duplicate.
        try:
            return _store([request], hooks)[0]
        except Exception as again:
            error = again
    if not database_unavailable(error) and _tenant_is_gone(request.tenant_id):
        return AuthenticationFailed(HTTP_REFUSALS.invalid)
    return error


def _tenant_is_gone(tenant_id: int) -> bool:
    """Whether the tenant was removed since its credentials were checked (and cached)."""
    try:
        with db.engine.connect() as connection:
            found = connection.execute(select(Tenant.id).where(Tenant.id == tenant_id)).first()
    except Exception:
        return False
    if found is None:
        current_app.extensions["credential_cache"].forget_tenant(tenant_id)
    return found is None


class GroupCommitter:
    """Shares commits between concurrent ingest requests of one process."""

    def __init__(
        self,
        max_events: int = 5000,
        enabled: bool = True,
        store_hooks: list[StoreHook] | None = None,
        subscribers: list[Subscriber] | None = None,
    ):
        self.max_events = max_events
        self.enabled = enabled
        self.store_hooks = store_hooks or []
        self.subscribers = subscribers or []
        self._lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._leading = False
        self._new_signal = _signal_type()

    def submit(self, tenant_id: int, items: list[dict]) -> IngestResult:
        request = _Request(tenant_id, items, self._new_signal())
        # Hand back the connection this request holds (from a credential lookup that
        # missed the cache) before waiting: followers holding connections could leave the
        # leader none to commit with. Most requests never opened a session at all.
        if db.session.registry.has():
            db.session.close()
        if not self.enabled:
            self._commit([request])
        else:
            with self._lock:
                self._waiting.append(request)
                request.leads = not self._leading
                self._leading = True
            if not request.leads:
                request.woken.wait()  # for our result, or to take over the lead
            if request.leads:
                self._lead()
        if request.error is not None:
            raise request.error
        return request.result

    def _lead(self) -> None:
        # Let requests that are ready to run join this group first: under eventlet
        # they are greenlets that only run when this one yields.
        time.sleep(0)
        try:
            self._commit(self._take_group())
        finally:
            # Even if the commit was interrupted (a greenlet killed mid-publish): a lead
            # nobody hands on would leave every later request waiting forever.
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.leads = True
                    successor.woken.set()
                else:
                    self._leading = False

    def _take_group(self) -> list[_Request]:
        with self._lock:
            group, size = [], 0
            while self._waiting and (
                not group or size + len(self._waiting[0].items) <= self.max_events
            ):
                request = self._waiting.pop(0)
                group.append(request)
                size += len(request.items)
            return group

    def _commit(self, group: list[_Request]) -> None:
        outcomes = _store_isolating(group, self.store_hooks)
        for request, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                request.error = outcome
            else:
                request.result = outcome
        try:
            self._publish(group)
        finally:
            for request in group:
                request.woken.set()

    def _publish(self, group: list[_Request]) -> None:
        """Hand what the group stored to each subscriber, one call per tenant, in storage order.

        Once per group rather than once per request: a socket then gets the group's
        events in one write (see ingest/fanout.py). Before the requests are woken, so an
        event is on its way to subscribers by the time its 201 is.
        """
        by_tenant: dict[int, list[dict]] = {}
        for request in group:
            if request.result is not None and request.result.accepted:
                by_tenant.setdefault(request.tenant_id, []).extend(request.result.new_events)
        for tenant_id, events in by_tenant.items():
            for subscriber in self.subscribers:
                subscriber(tenant_id, events)


def ingest_events(tenant_id: int, items: list[dict]) -> IngestResult:
    """Store validated events all-or-nothing; the new ones are published after the commit."""
    return current_app.extensions["group_commit"].submit(tenant_id, items)
