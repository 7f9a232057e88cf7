"""Credentials and tenants that change while in use, and the background tasks that follow.

- ``CredentialChanges``: a key revoked or rotated, a tenant changed, disabled or deleted
  is announced here. This node forgets the tenant's cached credentials at once; other
  nodes hear of it over Redis (when REDIS_URL is set) and do the same, and each node's
  sockets are checked against the database then and every CREDENTIAL_CHECK_MS.
  Without Redis, other nodes' caches follow within CREDENTIAL_CACHE_SECONDS.
- ``KeyUsage``: when each API key was last used, written at most every
  KEY_USAGE_FLUSH_S per key and node rather than on every request.
- ``Purger``: removes deleted tenants and events past retention (ingest/services/purge.py)
  every PURGE_INTERVAL_S, and at once after a deletion on this node.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import redis
from flask import Flask
from sqlalchemy import or_, update

from . import realtime
from .auth import now
from .extensions import db, socketio
from .models import ApiKey
from .outages import Outage
from .services.purge import run_purge

log = logging.getLogger("ingest.lifecycle")

# How long a change waits for the other nodes to say they have forgotten what they cached.
ANNOUNCE_WAIT_S = 1.0


class CredentialChanges:
    def __init__(self, app: Flask):
        self._app = app
        self._redis_url = app.config["REDIS_URL"]
        self._channel = f"{app.config['SOCKETIO_CHANNEL']}-credentials"
        self._serving = False
        # Bounded waits: an announcement must never hang the request that made the change.
        self._publisher = (
            redis.Redis.from_url(self._redis_url, socket_timeout=2, socket_connect_timeout=2)
            if self._redis_url
            else None
        )

    def announce(self, tenant_id: int) -> None:
        """After the change is committed: every node stops trusting what it cached.

        Returns once every node listening has acknowledged (or ANNOUNCE_WAIT_S passed):
        pub/sub alone is asynchronous, and another node accepted a revoked key for
        10-16 ms after the revocation was answered.
        """
        self.apply(tenant_id)
        if self._publisher is None:
            return
        nonce = secrets.token_hex(8)
        try:
            listening = self._publisher.publish(self._channel, f"{tenant_id} {nonce}")
            acknowledged = self._acknowledgements(nonce, listening)
        except redis.RedisError as error:
            log.warning(
                "could not tell other nodes of tenant %s's new credentials (%s); "
                "they follow within CREDENTIAL_CACHE_SECONDS",
                tenant_id,
                error,
            )
            return
        if acknowledged < listening:
            log.warning(
                "%s of %s nodes acknowledged tenant %s's new credentials in %s s; the others "
                "follow within CREDENTIAL_CACHE_SECONDS",
                acknowledged,
                listening,
                tenant_id,
                ANNOUNCE_WAIT_S,
            )

    def _acknowledgements(self, nonce: str, listening: int) -> int:
        acks, acknowledged = self._ack_key(nonce), 0
        deadline = time.monotonic() + ANNOUNCE_WAIT_S
        while acknowledged < listening and (left := deadline - time.monotonic()) > 0:
            if self._publisher.blpop([acks], timeout=left) is None:
                break
            acknowledged += 1
        self._publisher.delete(acks)
        return acknowledged

    def _ack_key(self, nonce: str) -> str:
        return f"{self._channel}-ack:{nonce}"

    def _heard(self, message: bytes) -> None:
        tenant_id, _, nonce = message.decode().partition(" ")
        self.apply(int(tenant_id))
        if nonce:
            acks = self._ack_key(nonce)
            self._publisher.pipeline().rpush(acks, 1).expire(acks, 60).execute()

    def apply(self, tenant_id: int) -> None:
        self._app.extensions["credential_cache"].forget_tenant(tenant_id)
        if self._serving:
            socketio.start_background_task(self._check_sockets)

    def start(self) -> None:
        """Check sockets periodically, and listen for other nodes' announcements."""
        self._serving = True
        socketio.start_background_task(self._check_sockets_forever)
        if self._redis_url:
            socketio.start_background_task(self.listen_forever)

    def _check_sockets(self) -> None:
        with self._app.app_context():
            realtime.disconnect_refused(now())

    def _check_sockets_forever(self) -> None:
        interval = self._app.config["CREDENTIAL_CHECK_MS"] / 1000
        outage = Outage(log, "checking sockets' credentials failed: %s", "checking works again")
        while True:
            socketio.sleep(interval)
            try:
                self._check_sockets()
            except Exception as error:
                outage.failed(error)
            else:
                outage.succeeded()

    def listen_forever(self) -> None:
        outage = Outage(
            log,
            "not hearing other nodes' credential changes (%s); caches follow within "
            "CREDENTIAL_CACHE_SECONDS",
            "hearing other nodes' credential changes again",
        )
        while True:
            try:
                # Pinged every 30 s: a Redis that vanished without closing the
                # connection is noticed, not waited on forever.
                subscription = redis.Redis.from_url(
                    self._redis_url, socket_keepalive=True, health_check_interval=30
                ).pubsub(ignore_subscribe_messages=True)
                subscription.subscribe(self._channel)
                outage.succeeded()
                while True:
                    # A timeout, not listen(): each call may send the health check's ping.
                    message = subscription.get_message(timeout=5)
                    if message is not None:
                        self._heard(message["data"])
            except (redis.RedisError, OSError, ValueError, UnicodeDecodeError) as error:
                outage.failed(error)
                socketio.sleep(1)


class KeyUsage:
    """API keys used since the last flush → when; flushed in one statement."""

    def __init__(self):
        self._used: dict[int, float] = {}
        self._lock = threading.Lock()

    def note(self, key_id: int) -> None:
        self._used[key_id] = time.time()

    def flush(self) -> int:
        with self._lock:
            used, self._used = self._used, {}
        if not used:
            return 0
        from datetime import UTC, datetime

        keys = ApiKey.__table__
        rows = [
            {"key": key_id, "at": datetime.fromtimestamp(at, UTC)} for key_id, at in used.items()
        ]
        statement = (
            update(keys)
            .where(keys.c.id == db.bindparam("key"))
            .where(or_(keys.c.last_used_at.is_(None), keys.c.last_used_at < db.bindparam("at")))
            .values(last_used_at=db.bindparam("at"))
        )
        with db.engine.begin() as connection:
            connection.execute(statement, rows)
        return len(rows)


class Purger:
    def __init__(self, app: Flask):
        self._app = app
        self._wake = None

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        interval = self._app.config["PURGE_INTERVAL_S"]
        if not interval:
            log.info("PURGE_INTERVAL_S=0: this node purges nothing (`flask purge run` does)")
            return
        self._wake = socketio.server.eio.create_event()
        socketio.start_background_task(self._purge_forever, interval)

    def _purge_forever(self, interval: float) -> None:
        outage = Outage(log, "purging failed: %s", "purging works again")
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                with self._app.app_context():
                    run_purge()
            except Exception as error:
                outage.failed(error)
            else:
                outage.succeeded()


def flush_forever(app: Flask) -> None:
    usage = app.extensions["key_usage"]
    outage = Outage(
        log, "recording keys' last use failed: %s", "recording keys' last use works again"
    )
    while True:
        socketio.sleep(app.config["KEY_USAGE_FLUSH_S"])
        try:
            with app.app_context():
                usage.flush()
        except Exception as error:
            outage.failed(error)
        else:
            outage.succeeded()


def init_app(app: Flask) -> None:
    app.extensions["credential_changes"] = CredentialChanges(app)
    app.extensions["key_usage"] = KeyUsage()
    app.extensions["purger"] = Purger(app)


def start(app: Flask) -> None:
    """The serving process's lifecycle tasks."""
    app.extensions["credential_changes"].start()
    app.extensions["purger"].start()
    socketio.start_background_task(flush_forever, app)
