"""Socket.IO: connect/auth, tenant rooms, replay, filters, and the one place that publishes events.

Delivery path: ``publish_events`` emits a group's stored events, up to 100 at a time, to
the room ``tenant:<id>``. With a message queue that emit goes through Redis to every
node; each node's client manager (``FeedManager`` below) hands them to its own sockets
in that room, one "event" message per event (ingest/fanout.py writes them). The manager
is where per-connection state applies: a socket that is still replaying buffers live
events instead of receiving them, and a socket with a type filter skips other types.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import socketio as python_socketio
from flask import current_app, request
from flask_socketio import ConnectionRefusedError
from sqlalchemy import or_, select

from .auth import Refusals, verify_credentials
from .errors import AuthenticationFailed, RateLimited, TenantDisabled
from .extensions import db, socketio
from .fanout import Fanout, deliver
from .models import ApiKey, Event, Tenant
from .outages import Outage
from .schemas import EVENT_ID, event_json

log = logging.getLogger("ingest.realtime")

NAMESPACE = "/"
# Carries a list of one tenant's events from publish_events (through the message queue,
# between nodes) to each node's FeedManager, which sends each one to clients as an
# ordinary "event" message: clients never see this name.
EVENTS_BATCH = "ingest:events"
# Events per message: bounds one message-queue message (metadata is up to 64 KiB each).
PUBLISH_BATCH_EVENTS = 100
# How long a replayed event's late live copy is still recognised (and dropped).
REPLAYED_MEMORY_SECONDS = 30.0


def tenant_room(tenant_id: int) -> str:
    return f"tenant:{tenant_id}"


# --- per-connection feed state -------------------------------------------------------------


@dataclass
class Feed:
    """One connection's view of its tenant's stream."""

    tenant_id: int | None = None
    key_id: int | None = None  # the API key it connected with (None: a JWT)
    types: frozenset[str] = frozenset()  # empty: every type
    replaying: bool = False
    buffered: list[dict] = field(default_factory=list)
    # Replayed ids whose live publish may still be on its way: an event is published
    # a moment after its commit, so the replay can read it before its live copy comes.
    replayed: set[str] = field(default_factory=set)
    replayed_until: float = 0.0

    def wants(self, event: dict) -> bool:
        return not self.types or event.get("type") in self.types


class FeedRegistry:
    """Feeds of the sockets connected to this process, keyed by Socket.IO sid."""

    def __init__(self):
        self._feeds: dict[str, Feed] = {}
        self._per_tenant: Counter[int] = Counter()
        self._lock = threading.Lock()

    def open(
        self, sid: str, tenant_id: int, key_id: int | None, replaying: bool, most: int
    ) -> bool:
        """Open a feed, unless its tenant already has ``most`` open on this node."""
        with self._lock:
            if self._per_tenant[tenant_id] >= most:
                return False
            self._feeds[sid] = Feed(tenant_id=tenant_id, key_id=key_id, replaying=replaying)
            self._per_tenant[tenant_id] += 1
            return True

    def close(self, sid: str) -> bool:
        """Close a feed; False if it was not open (closed already)."""
        with self._lock:
            feed = self._feeds.pop(sid, None)
            if feed is None:
                return False
            self._per_tenant[feed.tenant_id] -= 1
            if not self._per_tenant[feed.tenant_id]:
                del self._per_tenant[feed.tenant_id]
            return True

    def credentials(self) -> list[tuple[str, int, int | None]]:
        """(sid, tenant id, key id) of every open feed."""
        with self._lock:
            return [(sid, feed.tenant_id, feed.key_id) for sid, feed in self._feeds.items()]

    def set_types(self, sid: str, types: frozenset[str]) -> None:
        with self._lock:
            if sid in self._feeds:
                self._feeds[sid].types = types

    def route(self, sids: list[str], event: dict) -> list[str]:
        """Which of ``sids`` must not get this live event now (buffered or filtered out)."""
        skip = []
        with self._lock:
            for sid in sids:
                feed = self._feeds.get(sid)
                if feed is None:
                    continue
                if not feed.wants(event) or self._already_replayed(feed, event):
                    skip.append(sid)
                elif feed.replaying:
                    feed.buffered.append(event)
                    skip.append(sid)
        return skip

    @staticmethod
    def _already_replayed(feed: Feed, event: dict) -> bool:
        if not feed.replayed:
            return False
        if time.monotonic() > feed.replayed_until:
            feed.replayed = set()
            return False
        if event["id"] in feed.replayed:
            feed.replayed.discard(event["id"])
            return True
        return False

    def go_live(self, sid: str, already_sent: set[str]) -> list[dict]:
        """End the replay: return buffered events not already replayed, in arrival order."""
        with self._lock:
            feed = self._feeds.get(sid)
            if feed is None:
                return []
            pending = [e for e in feed.buffered if e["id"] not in already_sent and feed.wants(e)]
            feed.replayed = already_sent - {e["id"] for e in feed.buffered}
            feed.replayed_until = time.monotonic() + REPLAYED_MEMORY_SECONDS
            feed.buffered = []
            feed.replaying = False
            return pending

    def types_of(self, sid: str) -> frozenset[str]:
        with self._lock:
            feed = self._feeds.get(sid)
            return feed.types if feed else frozenset()


feeds = FeedRegistry()


class FeedManager(python_socketio.Manager):
    """A client manager that routes tenant events through each socket's feed.

    Every node's local delivery ends in ``Manager.emit``; the Redis manager's
    receiving side calls it through ``super()``, which reaches this class when it
    is mixed in after the pub/sub manager (see ``RedisFeedManager``).
    """

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, **kwargs):
        room = kwargs.pop("to", None) or room
        if event == EVENTS_BATCH and isinstance(room, str) and callback is None:
            return self._publish_locally(namespace, room, data, skip_sid)
        return super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )

    def _publish_locally(self, namespace: str, room: str, events: list[dict], skip_sid) -> None:
        """A tenant's events to this node's sockets in its room, each as an "event" message.

        Each event is encoded once; each socket gets all of its events in one write.
        """
        participants = list(self.get_participants(namespace, room))
        if not participants:
            return
        sids = [sid for sid, _ in participants]
        skipped = set(_as_list(skip_sid))
        outgoing: dict[str, list[Fanout]] = {}
        for event in events:
            skip = skipped.union(feeds.route(sids, event))
            fanout = None
            for sid, eio_sid in participants:
                if sid in skip:
                    continue
                if fanout is None:
                    fanout = Fanout(self._encode(namespace, event))
                outgoing.setdefault(eio_sid, []).append(fanout)
        for eio_sid, fanouts in outgoing.items():
            deliver(self.server, eio_sid, fanouts)

    def _encode(self, namespace: str, event: dict) -> str:
        return self.server.packet_class(
            python_socketio.packet.EVENT, namespace=namespace, data=["event", event]
        ).encode()


class RedisFeedManager(python_socketio.RedisManager, FeedManager):
    """Redis pub/sub between nodes, FeedManager routing on each node.

    While Redis is unreachable, publishing is skipped for a second at a time instead
    of trying to reconnect for every event: ingestion must not slow down, and the
    events are stored, so clients recover them by replay.
    """

    RETRY_SECONDS = 1.0

    def __init__(self, url: str, channel: str):
        super().__init__(url, channel=channel, redis_options={"socket_connect_timeout": 1})
        self.outage = Outage(
            log,
            went="message queue unreachable; live delivery paused: %s",
            came_back="message queue reachable again; live delivery resumed",
            went_level=logging.ERROR,
            retry_seconds=self.RETRY_SECONDS,
        )

    def _publish(self, data):
        if self.outage.paused:
            return None
        try:
            if not self.connected:
                self._redis_connect()
            result = self.redis.publish(self.channel, self.json.dumps(data))
        except Exception as error:
            self.connected = False
            self.outage.failed(error)
            return None
        self.outage.succeeded()
        return result


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def make_client_manager(message_queue: str | None, channel: str):
    if message_queue:
        return RedisFeedManager(message_queue, channel=channel)
    return FeedManager()


# --- publishing ------------------------------------------------------------------------------


def publish_events(tenant_id: int, events: list[dict]) -> None:
    """Emit newly stored events (as ``event_json`` renders them), after their commit.

    Subscribers get each one as an "event" message, in the order given.

    A failure here (e.g. the message queue is down) never fails ingestion: the
    events are stored, and a client that missed them recovers them by replay.
    """
    if not events:
        return
    room = tenant_room(tenant_id)
    for start in range(0, len(events), PUBLISH_BATCH_EVENTS):
        if start:
            time.sleep(0)  # a big group: let requests and pings run between batches
        batch = events[start : start + PUBLISH_BATCH_EVENTS]
        try:
            socketio.emit(EVENTS_BATCH, batch, to=room, namespace=NAMESPACE)
        except Exception:
            log.exception(
                "publishing %d event(s) to %s failed; clients will replay", len(batch), room
            )


# --- replay ----------------------------------------------------------------------------------


def events_to_replay(tenant_id: int, last_event_id: str, limit: int) -> tuple[list[Event], bool]:
    """Events stored after ``last_event_id``, oldest first, and whether the list was cut.

    An unknown id means continuity is lost: the newest ``limit`` events, truncated. So
    does an id no event can have, which is not looked up at all (it may hold text the
    database refuses, and a failed replay would disconnect a client that reconnects
    with the same id forever).
    """
    after = None
    if EVENT_ID.fullmatch(last_event_id):
        after = db.session.scalar(
            select(Event.seq).where(Event.tenant_id == tenant_id, Event.event_id == last_event_id)
        )
    stmt = select(Event).where(Event.tenant_id == tenant_id)
    if after is not None:
        stmt = stmt.where(Event.seq > after)
    newest_first = list(db.session.scalars(stmt.order_by(Event.seq.desc()).limit(limit + 1)))
    truncated = after is None or len(newest_first) > limit
    return list(reversed(newest_first[:limit])), truncated


def _wait_until_connected(sid: str, timeout: float = 10.0) -> bool:
    # The connect handler starts the replay before the server has sent CONNECT;
    # anything emitted to the socket before that would reach the client too early.
    manager = socketio.server.manager
    waited = 0.0
    while not manager.is_connected(sid, NAMESPACE):
        if waited >= timeout:
            return False
        socketio.sleep(0.005)
        waited += 0.005
    return True


def _replay(app, sid: str, tenant_id: int, last_event_id: str) -> None:
    if not _wait_until_connected(sid):
        feeds.close(sid)
        return
    with app.app_context():
        try:
            sent = _send_missed_events(sid, tenant_id, last_event_id, app.config["REPLAY_LIMIT"])
        except Exception:
            # Without a replay this socket would buffer live events forever; drop it
            # instead, and the client's reconnect retries with the same last_event_id.
            log.exception("replay for %s failed; disconnecting it", sid)
            feeds.close(sid)
            socketio.server.disconnect(sid, namespace=NAMESPACE)
            return
        finally:
            db.session.remove()
    # Live events that arrived while replaying, minus those the replay already sent.
    for payload in feeds.go_live(sid, sent):
        socketio.emit("event", payload, to=sid, namespace=NAMESPACE)


def _send_missed_events(sid: str, tenant_id: int, last_event_id: str, limit: int) -> set[str]:
    """Emit the missed events and replay_complete; return the ids read from the database."""
    events, truncated = events_to_replay(tenant_id, last_event_id, limit)
    types = feeds.types_of(sid)
    read, count = set(), 0
    for event in events:
        payload = event_json(event)
        read.add(payload["id"])
        if not types or payload["type"] in types:
            socketio.emit("event", payload, to=sid, namespace=NAMESPACE)
            count += 1
    socketio.emit(
        "replay_complete", {"count": count, "truncated": truncated}, to=sid, namespace=NAMESPACE
    )
    return read


# --- Socket.IO handlers ----------------------------------------------------------------------


def _credentials(auth) -> tuple[str | None, str | None, str | None]:
    auth = auth if isinstance(auth, dict) else {}
    api_key = auth.get("api_key") or request.args.get("api_key")
    token = auth.get("token")
    last_event_id = auth.get("last_event_id")
    return (
        api_key if isinstance(api_key, str) else None,
        token if isinstance(token, str) else None,
        last_event_id if isinstance(last_event_id, str) and last_event_id else None,
    )


_SOCKET_REFUSALS = Refusals(
    missing="send auth={'api_key': ...} or auth={'token': ...}",
    invalid="invalid, expired or revoked credentials",
    misplaced_key="that is an API key: send it as auth={'api_key': ...}",
    disabled="this tenant is disabled; an administrator can enable it again",
)


def _authenticate(api_key: str | None, token: str | None):
    """The connecting tenant's principal, or ConnectionRefusedError saying why."""
    try:
        return verify_credentials(api_key, token, _SOCKET_REFUSALS)
    except (AuthenticationFailed, RateLimited, TenantDisabled) as error:
        raise ConnectionRefusedError(f"{error.code}: {error.message}") from None


@socketio.on("connect")
def on_connect(auth=None):
    api_key, token, last_event_id = _credentials(auth)
    principal = _authenticate(api_key, token)
    if principal.is_admin:
        raise ConnectionRefusedError(
            "forbidden: the admin token has no event stream; use a tenant token"
        )
    sid = request.sid
    # Buffer live events from the moment the socket is in the room until the replay is done.
    most = current_app.config["MAX_SOCKETS_PER_TENANT"]
    if not feeds.open(sid, principal.tenant_id, principal.key_id, last_event_id is not None, most):
        raise ConnectionRefusedError(
            f"too_many_connections: this tenant has {most} sockets open on this server"
        )
    socketio.server.enter_room(sid, tenant_room(principal.tenant_id), namespace=NAMESPACE)
    if last_event_id is not None:
        socketio.start_background_task(
            _replay, current_app._get_current_object(), sid, principal.tenant_id, last_event_id
        )


# --- connections that never join -------------------------------------------------------------


def close_unjoined(first_seen: dict[str, float], timeout: float, now: float) -> int:
    """Close Engine.IO connections that have not joined the namespace ``timeout`` after
    this sweep first saw them; returns how many. ``first_seen`` persists between sweeps.

    Authentication happens when a client joins: until then an Engine.IO connection is
    anonymous, yet it holds a connection slot (and answers pings) for as long as it
    likes. 1,024 of them made a server unreachable for every tenant.
    """
    server = socketio.server
    open_now = set(server.environ)  # every Engine.IO connection of this process
    for eio_sid in set(first_seen) - open_now:
        del first_seen[eio_sid]
    closed = 0
    for eio_sid in open_now:
        if server.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None:
            first_seen.pop(eio_sid, None)
            continue
        seen = first_seen.setdefault(eio_sid, now)
        if now - seen >= timeout:
            del first_seen[eio_sid]
            server.eio.disconnect(eio_sid)
            closed += 1
    return closed


def start_sweeping_unjoined(app) -> None:
    """Close never-joining connections in the background (the serving process only)."""
    timeout = app.config["SOCKETIO_JOIN_TIMEOUT_SECONDS"]
    socketio.start_background_task(_sweep_forever, timeout, min(1.0, timeout / 2))


def _sweep_forever(timeout: float, interval: float) -> None:
    first_seen: dict[str, float] = {}
    while True:
        socketio.sleep(interval)
        try:
            close_unjoined(first_seen, timeout, time.monotonic())
        except Exception:
            log.exception("closing connections that never joined failed")


@socketio.on("subscribe")
def on_subscribe(data=None):
    types = data.get("types") if isinstance(data, dict) else None
    if types is None:
        types = []
    if not isinstance(types, list) or not all(
        isinstance(t, str) and 0 < len(t) <= 100 for t in types
    ):
        return {"error": {"code": "validation_error", "message": "types must be a list of strings"}}
    feeds.set_types(request.sid, frozenset(types))
    return {"types": sorted(set(types))}


@socketio.on("disconnect")
def on_disconnect(reason=None):
    feeds.close(request.sid)


# --- credentials that stop being valid -----------------------------------------------------

# What a socket hears before it is disconnected, by why (the "revoked" event).
REVOKED_REASONS = {
    "tenant_disabled": "this tenant was disabled",
    "tenant_deleted": "this tenant was deleted",
    "key_revoked": "the API key this socket connected with (or whose token it used) was "
    "revoked or has expired",
}


def _refusals(open_feeds: list[tuple[str, int, int | None]], moment) -> dict[str, str]:
    """sid → reason, for the open feeds whose credentials are no longer good."""
    tenant_ids = {tenant_id for _, tenant_id, _ in open_feeds}
    key_ids = {key_id for _, _, key_id in open_feeds if key_id is not None}
    tenants = {
        row.id: row
        for row in db.session.execute(
            select(Tenant.id, Tenant.disabled, Tenant.deleting_since).where(
                Tenant.id.in_(tenant_ids)
            )
        )
    }
    usable_keys = (
        set(
            db.session.scalars(
                select(ApiKey.id).where(
                    ApiKey.id.in_(key_ids),
                    ApiKey.revoked_at.is_(None),
                    or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > moment),
                )
            )
        )
        if key_ids
        else set()
    )
    refused = {}
    for sid, tenant_id, key_id in open_feeds:
        tenant = tenants.get(tenant_id)
        if tenant is None or tenant.deleting_since is not None:
            refused[sid] = "tenant_deleted"
        elif tenant.disabled:
            refused[sid] = "tenant_disabled"
        elif key_id is not None and key_id not in usable_keys:
            refused[sid] = "key_revoked"
    return refused


def disconnect_refused(moment) -> int:
    """Disconnect this node's sockets whose credentials were revoked, expired, or whose
    tenant was disabled or deleted, telling each why first; returns how many."""
    open_feeds = feeds.credentials()
    if not open_feeds:
        return 0
    try:
        refused = _refusals(open_feeds, moment)
    finally:
        db.session.remove()
    dropped = 0
    for sid, reason in refused.items():
        if not feeds.close(sid):
            continue  # another check (or its own disconnect) got there first
        dropped += 1
        reasoned = {"code": reason, "message": REVOKED_REASONS[reason]}
        socketio.emit("revoked", reasoned, to=sid, namespace=NAMESPACE)
        socketio.server.disconnect(sid, namespace=NAMESPACE)
    return dropped
