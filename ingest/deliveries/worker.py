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

from ..extensions import db, socketio
from ..models import utcnow
from . import signing, store
from .sender import Outcome, Sender, bound_response_headers
from .store import Claimed, Policy, Result, Target

log = logging.getLogger("ingest.webhooks")

# A worker holds at most this many rounds of concurrent sends per endpoint.
CLAIM_ROUNDS = 4
# Outcomes written per transaction, at most.
RECORD_BATCH = 500
# Between claim rounds, at least: wakeups during a round are served by the next one.
MIN_ROUND_INTERVAL = 0.005
PRUNE_EVERY_SECONDS = 3600
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
        bound_response_headers()
        self.sender = Sender(
            timeout=config["WEBHOOK_TIMEOUT_S"],
            concurrency=self.concurrency,
            allow_private=config["WEBHOOK_ALLOW_PRIVATE"],
            user_agent=user_agent(),
        )
        self._lock = threading.Lock()
        self._held: dict[int, int] = defaultdict(int)  # claimed, not sent yet
        self._queued: dict[int, deque] = defaultdict(deque)
        self._senders: dict[int, int] = defaultdict(int)
        self._tenants_with_endpoints: set[int] = set()
        self._wakeup = None
        self._results = None
        self._stopping = False
        self._next_prune = 0.0
        self._next_tenant_refresh = 0.0

    # --- running ------------------------------------------------------------------------

    def start(self) -> None:
        """Run the dispatcher and the recorder in the background of this process."""
        eio = socketio.server.eio
        self._wakeup = eio.create_event()
        self._results = eio.create_queue()
        self._stopping = False
        socketio.start_background_task(self._dispatch_forever)
        socketio.start_background_task(self._record_forever)
        log.info("webhook delivery worker started")

    def join(self) -> None:
        """Wait until stop() (the CLI's worker: the background tasks are daemons)."""
        while not self._stopping:
            socketio.sleep(0.5)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def events_stored(self, tenant_id: int, _events: list[dict]) -> None:
        """A group commit's subscriber: new events for a tenant with endpoints mean work."""
        if tenant_id in self._tenants_with_endpoints:
            self.wake()

    def endpoints_changed(self, tenant_id: int) -> None:
        self._tenants_with_endpoints.add(tenant_id)
        self.wake()

    def _dispatch_forever(self) -> None:
        failing = False
        while not self._stopping:
            self._wakeup.wait(self.poll_seconds)
            self._wakeup.clear()
            if self._stopping:
                return
            try:
                for target, claimed in self.claim_round():
                    self._hand_to_senders(target, claimed)
                self._prune_if_due()
            except Exception as error:
                # The database is away: say so once, keep trying; nothing is lost, as
                # pending deliveries stay in the database and leases run out.
                if not failing:
                    log.warning("claiming webhook deliveries failed: %s", error)
                failing = True
            else:
                if failing:
                    log.info("claiming webhook deliveries works again")
                failing = False
            socketio.sleep(MIN_ROUND_INTERVAL)

    def _record_forever(self) -> None:
        empty = socketio.server.eio.get_queue_empty_exception()
        while not self._stopping:
            try:
                batch = [self._results.get(timeout=1)]
            except empty:
                continue
            while len(batch) < RECORD_BATCH:
                try:
                    batch.append(self._results.get_nowait())
                except empty:
                    break
            self._record_until_written(batch)
            self.wake()

    def _record_until_written(self, batch: list[Result]) -> None:
        while True:
            try:
                self.record(batch)
                return
            except Exception as error:
                # Unwritten, the deliveries stay leased; they are sent again if this
                # process dies (at least once), never dropped.
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
            for target in store.due_endpoints(connection, now):
                room = self.claim_size - self._held[target.id]
                if room <= 0:
                    continue
                claimed = store.claim(connection, target.id, room, now, now + self.lease, token)
                if claimed:
                    work.append((target, claimed))
            store.attach_bodies(connection, [d for _, claimed in work for d in claimed])
        with self._lock:
            for target, claimed in work:
                self._held[target.id] += len(claimed)
        return work

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
        with self.app.app_context(), db.engine.begin() as connection:
            store.record(connection, results, utcnow(), self.policy)

    def run_once(self) -> int:
        """Claim, send and record everything due now, in this thread; how many were sent."""
        results = []
        for target, claimed in self.claim_round():
            for delivery in claimed:
                results.append(self.send(target, delivery))
                self._sent(target.id)
        self.record(results)
        return len(results)

    def prune(self) -> int:
        """Remove finished deliveries older than WEBHOOK_LOG_RETENTION_DAYS, in batches."""
        before, removed = utcnow() - self.retention, 0
        while True:
            with self.app.app_context(), db.engine.begin() as connection:
                batch = store.prune(connection, before, PRUNE_BATCH)
            removed += batch
            if batch < PRUNE_BATCH:
                return removed
            socketio.sleep(0)  # let ingestion in between batches

    def _prune_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_SECONDS
            removed = self.prune()
            if removed:
                log.info("pruned %d webhook deliveries older than %s", removed, self.retention)

    # --- senders ------------------------------------------------------------------------

    def _hand_to_senders(self, target: Target, claimed: list[Claimed]) -> None:
        with self._lock:
            self._queued[target.id].extend((target, delivery) for delivery in claimed)
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
                target, delivery = queued.popleft()
            try:
                result = self.send(target, delivery)
            except Exception as error:  # a bug, not the receiver: keep the lease's promise
                log.exception("sending webhook delivery %s failed", delivery.id)
                result = Result(delivery, Outcome(error=f"Internal error: {type(error).__name__}"))
            self._sent(endpoint_id)
            self._results.put(result)

    def _sent(self, endpoint_id: int) -> None:
        """One claimed delivery sent: past half of a claim, the dispatcher claims more.

        Not once it is recorded: waiting for the recorder as well held the next claim
        until the whole cycle (claim, send, record) was over, and the senders idled
        through both transactions (make bench: gaps of 20-40 ms, several a second).
        """
        with self._lock:
            self._held[endpoint_id] -= 1
            room = self._held[endpoint_id] <= self.claim_size // 2
        if room:
            self.wake()
