"""The delivery worker: claims due deliveries, sends them, records what happened.

One dispatcher claims work a round at a time: for each enabled endpoint, up to
CLAIM_ROUNDS x WEBHOOK_CONCURRENCY due deliveries minus what this worker has claimed
of it and not sent yet, under a lease long enough to send them all. Each endpoint has
at most WEBHOOK_CONCURRENCY senders, so a slow or dead receiver holds only its own
slots and never delays another endpoint's deliveries. Senders wake the dispatcher for
more once half of an endpoint's claim is sent, so the next claim overlaps the sending
and the recording; a recorder writes outcomes in batches, one transaction for many.

The dispatcher is woken when this process stores events for a tenant that has
endpoints; otherwise it looks every WEBHOOK_POLL_MS for retries coming due and for
deliveries queued by other nodes. It runs inside the server (eventlet: green threads)
or as `flask --app wsgi webhooks worker` (threads); Engine.IO's primitives pick the
right kind for each.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import defaultdict, deque
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version

from flask import Flask

from ..errors import database_unavailable
from ..extensions import db, socketio
from ..models import FAILED, SUCCEEDED, utcnow
from ..outages import Outage
from . import signing, store
from .sender import Outcome, Sender
from .store import Claimed, Policy, Result, Target

log = logging.getLogger("ingest.webhooks")

# A worker holds at most this many rounds of concurrent sends per endpoint, and per
# tenant (whatever its number of endpoints).
CLAIM_ROUNDS = 4
TENANT_CLAIM_ROUNDS = 8
# Outcomes written per transaction, at most; and how long the recorder gathers them
# before writing (they are sent already: only the log waits).
RECORD_BATCH = 500
RECORD_GATHER_SECONDS = 0.02
# Between claim rounds, at least: wakeups during a round are served by the next one.
MIN_ROUND_INTERVAL = 0.005
PRUNE_EVERY_SECONDS = 3600
PRUNE_FIRST_AFTER_SECONDS = 60
# How often the tenants whose new events wake the worker are read again (endpoints made
# on this node are added at once; on other nodes, the poll finds their work meanwhile).
TENANT_REFRESH_SECONDS = 1.0
PRUNE_BATCH = 1000
GONE_EVENT = Outcome(error="The event is no longer stored.")


def user_agent() -> str:
    try:
        return f"ingest-webhooks/{version('ingest')}"
    except PackageNotFoundError:
        return "ingest-webhooks"


class DeliveryWorker:
    def __init__(self, app: Flask):
        config = app.config
        self.app = app
        self.concurrency = config["WEBHOOK_CONCURRENCY"]
        self.claim_size = CLAIM_ROUNDS * self.concurrency
        # Long enough for every claimed delivery to wait its turn and time out.
        self.lease = timedelta(seconds=config["WEBHOOK_TIMEOUT_S"] * (CLAIM_ROUNDS + 1) + 30)
        self.policy = Policy(
            schedule=config["WEBHOOK_RETRY_SCHEDULE"],
            disable_after=timedelta(seconds=config["WEBHOOK_DISABLE_AFTER_S"]),
        )
        self.poll_seconds = config["WEBHOOK_POLL_MS"] / 1000
        self.retention = timedelta(days=config["WEBHOOK_LOG_RETENTION_DAYS"])
        self.sender = Sender(
            timeout=config["WEBHOOK_TIMEOUT_S"],
            concurrency=self.concurrency,
            allow_private=config["WEBHOOK_ALLOW_PRIVATE"],
            user_agent=user_agent(),
        )
        self._lock = threading.Lock()
        self.tenant_claim_size = TENANT_CLAIM_ROUNDS * self.concurrency
        # Claimed and not sent yet, by endpoint and by tenant.
        self._held: dict[int, int] = defaultdict(int)
        self._held_by_tenant: dict[int, int] = defaultdict(int)
        # Claimed deliveries waiting for a sender, and whom to send them to (None: the
        # endpoint was disabled or deleted since).
        self._queued: dict[int, deque[Claimed]] = defaultdict(deque)
        self._targets: dict[int, Target | None] = {}
        self._senders: dict[int, int] = defaultdict(int)
        self._tenants_with_endpoints: set[int] = set()
        self._wakeup = None
        self._results = None
        self._stopping = False
        self._claiming = False
        self._recording = False
        # Where notifications go when the worker runs in a process beside this one.
        self._beside = None
        self._next_tenant_refresh = 0.0

    # --- running ------------------------------------------------------------------------

    def start(self) -> None:
        """Run the dispatcher and the recorder in the background of this process."""
        eio = socketio.server.eio
        self._wakeup = eio.create_event()
        self._results = eio.create_queue()
        self._stopping = False
        self._claiming = True
        socketio.start_background_task(self._dispatch_forever)
        socketio.start_background_task(self._record_forever)
        socketio.start_background_task(self._prune_forever)
        log.info("webhook delivery worker started")
        if self.sender.allow_private:
            log.warning(
                "WEBHOOK_ALLOW_PRIVATE is on: tenants' webhooks can reach loopback and "
                "private networks (for development only)"
            )

    def join(self) -> None:
        """Wait until stop() (the CLI's worker: the background tasks are daemons)."""
        while not self._stopping:
            socketio.sleep(0.5)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def finish(self) -> None:
        """Stop claiming, send and record what is claimed (for up to the timeout), then stop.

        What is still held after that is sent again once its lease runs out.
        """
        self._claiming = False
        self.wake()
        until = time.monotonic() + self.sender.timeout + 2
        while time.monotonic() < until and self._busy():
            socketio.sleep(0.05)
        self.stop()

    def _busy(self) -> bool:
        with self._lock:
            held = any(self._held.values())
        return held or self._recording or not self._results.empty()

    def run_beside(self, notifications) -> None:
        """Hand this process's notifications to a worker in a process beside it."""
        self._beside = notifications

    def wake(self) -> None:
        if self._beside is not None:
            self._beside.wake()
        elif self._wakeup is not None:
            self._wakeup.set()

    def events_stored(self, tenant_id: int, _events: list[dict]) -> None:
        """A group commit's subscriber: new events for a tenant with endpoints mean work."""
        if self._beside is not None:
            self._beside.events_stored(tenant_id)
        elif tenant_id in self._tenants_with_endpoints:
            self.wake()

    def endpoints_changed(self, tenant_id: int) -> None:
        if self._beside is not None:
            self._beside.endpoints_changed(tenant_id)
            return
        self._tenants_with_endpoints.add(tenant_id)
        self.wake()

    def _dispatch_forever(self) -> None:
        # The database away: said once each way; nothing is lost meanwhile, as pending
        # deliveries stay in the database and leases run out.
        outage = Outage(
            log, "claiming webhook deliveries failed: %s", "claiming webhook deliveries works again"
        )
        while not self._stopping:
            self._wakeup.wait(self.poll_seconds)
            self._wakeup.clear()
            if self._stopping or not self._claiming:
                return
            try:
                for target, claimed in self.claim_round():
                    self._hand_to_senders(target, claimed)
            except Exception as error:
                outage.failed(error)
            else:
                outage.succeeded()
            socketio.sleep(MIN_ROUND_INTERVAL)

    def _record_forever(self) -> None:
        empty = socketio.server.eio.get_queue_empty_exception()
        while not self._stopping:
            try:
                batch = [self._results.get(timeout=1)]
            except empty:
                continue
            self._recording = True  # before the queue looks empty to finish()
            try:
                until = time.monotonic() + RECORD_GATHER_SECONDS
                while len(batch) < RECORD_BATCH:
                    try:
                        batch.append(self._results.get(timeout=max(until - time.monotonic(), 0)))
                    except empty:
                        break
                self._record_until_written(batch)
            finally:
                self._recording = False
            self.wake()

    def _record_until_written(self, batch: list[Result]) -> None:
        while True:
            try:
                self.record(batch)
                return
            except Exception as error:
                # The database is away (record() writes around anything else): keep
                # trying; meanwhile the deliveries stay leased, and are sent again if
                # this process dies (at least once), never dropped.
                log.warning(
                    "recording %d webhook outcome(s) failed, retrying: %s", len(batch), error
                )
                socketio.sleep(1)

    # --- the steps, also run one at a time by run_once() --------------------------------

    def claim_round(self) -> list[tuple[Target, list[Claimed]]]:
        """Claim what is due for every endpoint with room, in one transaction."""
        now = utcnow()
        token = secrets.token_hex(16)
        work = []
        with self.app.app_context(), db.engine.begin() as connection:
            if time.monotonic() >= self._next_tenant_refresh:
                self._next_tenant_refresh = time.monotonic() + TENANT_REFRESH_SECONDS
                self._tenants_with_endpoints = store.tenants_with_endpoints(connection)
            due = store.due_endpoints(connection, now)
            self._refresh_targets(connection, due, now)
            this_round: dict[int, int] = defaultdict(int)  # claimed now, by tenant
            for target in due:
                room = self._room(target, this_round[target.tenant_id])
                claimed = store.claim(connection, target.id, room, now, now + self.lease, token)
                if claimed:
                    work.append((target, claimed))
                    this_round[target.tenant_id] += len(claimed)
            store.attach_bodies(connection, [d for _, claimed in work for d in claimed])
        # Held once the claims are committed: a round that failed claimed nothing.
        for target, claimed in work:
            self._hold(target, len(claimed))
        return work

    def _room(self, target: Target, tenant_claimed_now: int) -> int:
        """How many more deliveries of this endpoint this worker may claim now.

        At most CLAIM_ROUNDS rounds of concurrent sends per endpoint, and per tenant
        TENANT_CLAIM_ROUNDS, whatever its number of endpoints: a tenant's twenty
        endpoints get the share of two, and other tenants' deliveries theirs.
        """
        with self._lock:
            endpoint = self.claim_size - self._held[target.id]
            tenant = (
                self.tenant_claim_size - self._held_by_tenant[target.tenant_id] - tenant_claimed_now
            )
        return max(min(endpoint, tenant), 0)

    def _hold(self, target: Target, count: int) -> None:
        with self._lock:
            self._held[target.id] += count
            self._held_by_tenant[target.tenant_id] += count

    def _refresh_targets(self, connection, due: list[Target], now) -> None:
        """Send to endpoints as they are now: claimed deliveries waiting for a sender
        follow a URL or secret change, and are dropped for an endpoint disabled or
        deleted meanwhile (their lease runs out; they stay pending, or went with it)."""
        fresh = {target.id: target for target in due}
        with self._lock:
            waiting = [e for e, queued in self._queued.items() if queued and e not in fresh]
        if waiting:
            fresh |= {t.id: t for t in store.enabled_targets(connection, waiting, now)}
        with self._lock:
            for endpoint_id in waiting:
                self._targets[endpoint_id] = fresh.get(endpoint_id)
            self._targets.update((target.id, target) for target in due)

    def send(self, target: Target, delivery: Claimed) -> Result:
        if delivery.body is None:
            return Result(delivery, GONE_EVENT)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signatures(
                list(target.secrets), delivery.event_id, timestamp, delivery.body
            ),
        }
        return Result(delivery, self.sender.post(target.url, headers, delivery.body))

    def record(self, results: list[Result]) -> None:
        """Write the outcomes in one transaction, or apart if that fails.

        A failure that is not the database being away is one outcome's doing, not its
        neighbours': each is then written alone, and one that still fails is left to its
        lease, which runs out and has it sent again (at least once; never dropped).
        """
        try:
            self._write(results)
        except Exception as error:
            if database_unavailable(error) or len(results) == 1:
                raise
            for result in results:
                try:
                    self._write([result])
                except Exception as alone:
                    if database_unavailable(alone):
                        raise
                    log.exception("recording webhook delivery %s failed", result.delivery.id)

    def _write(self, results: list[Result]) -> None:
        with self.app.app_context(), db.engine.begin() as connection:
            store.record(connection, results, utcnow(), self.policy)

    def run_once(self) -> int:
        """Claim, send and record everything due now, in this thread; how many were sent."""
        results = []
        for target, claimed in self.claim_round():
            for delivery in claimed:
                results.append(self.send(target, delivery))
                self._sent(delivery)
        self.record(results)
        return len(results)

    def prune(self) -> int:
        """Remove finished deliveries older than WEBHOOK_LOG_RETENTION_DAYS, in batches.

        Endpoint by endpoint and status by status, below the first id of the period
        kept: each batch is a range of an index, however many pending deliveries (which
        stay, whatever their age) lie among them.
        """
        with self.app.app_context(), db.engine.connect() as connection:
            below = store.first_id_created_since(connection, utcnow() - self.retention)
            endpoint_ids = store.endpoint_ids(connection)
        removed = 0
        for endpoint_id in endpoint_ids:
            for status in (SUCCEEDED, FAILED):
                while True:
                    with self.app.app_context(), db.engine.begin() as connection:
                        batch = store.prune(connection, endpoint_id, status, below, PRUNE_BATCH)
                    removed += batch
                    socketio.sleep(0)  # let ingestion and deliveries in between batches
                    if batch < PRUNE_BATCH:
                        break
        return removed

    def _prune_forever(self) -> None:
        """Pruning as a task of its own: a long one never holds up claims."""
        wait = PRUNE_FIRST_AFTER_SECONDS  # soon after a start: servers restart often
        while not self._stopping:
            socketio.sleep(wait)
            wait = PRUNE_EVERY_SECONDS
            try:
                removed = self.prune()
            except Exception as error:
                log.warning("pruning webhook deliveries failed: %s", error)
            else:
                if removed:
                    log.info("pruned %d webhook deliveries older than %s", removed, self.retention)

    # --- senders ------------------------------------------------------------------------

    def _hand_to_senders(self, target: Target, claimed: list[Claimed]) -> None:
        with self._lock:
            self._targets[target.id] = target
            self._queued[target.id].extend(claimed)
            wanted = min(self.concurrency, len(self._queued[target.id])) - self._senders[target.id]
            self._senders[target.id] += max(wanted, 0)
        for _ in range(wanted):
            socketio.start_background_task(self._send_queued, target.id)

    def _send_queued(self, endpoint_id: int) -> None:
        while True:
            with self._lock:
                queued = self._queued[endpoint_id]
                if not queued:
                    self._senders[endpoint_id] -= 1
                    return
                delivery = queued.popleft()
                target = self._targets.get(endpoint_id)
            if target is None:  # disabled or deleted since it was claimed: not sent
                self._sent(delivery)
                continue
            try:
                result = self.send(target, delivery)
            except Exception as error:  # a bug, not the receiver: keep the lease's promise
                log.exception("sending webhook delivery %s failed", delivery.id)
                result = Result(delivery, Outcome(error=f"Internal error: {type(error).__name__}"))
            self._sent(delivery)
            self._results.put(result)

    def _sent(self, delivery: Claimed) -> None:
        """One claimed delivery sent: past half of a claim, the dispatcher claims more.

        Not once it is recorded: waiting for the recorder as well held the next claim
        until the whole cycle (claim, send, record) was over, and the senders idled
        through both transactions (make bench: gaps of 20-40 ms, several a second).
        """
        with self._lock:
            self._held[delivery.endpoint_id] -= 1
            self._held_by_tenant[delivery.tenant_id] -= 1
            room = self._held[delivery.endpoint_id] <= self.claim_size // 2
        if room:
            self.wake()
