"""Socket.IO: the one place that publishes stored events to their tenant's room."""

from __future__ import annotations

import logging

from .extensions import socketio
from .models import Event

log = logging.getLogger("ingest.realtime")


def tenant_room(tenant_id: int) -> str:
    return f"tenant:{tenant_id}"


def publish_events(tenant_id: int, events: list[Event]) -> None:
    """Emit each newly stored event, after its commit, exactly as the REST API returns it.

    A failure here (e.g. the message queue is down) never fails ingestion: the
    events are stored, and a client that missed them recovers them by replay.
    """
    if not events:
        return
    from .services.events import serialize

    room = tenant_room(tenant_id)
    try:
        for event in events:
            socketio.emit("event", serialize(event), to=room)
    except Exception:
        log.exception("publishing %d event(s) to %s failed; clients will replay", len(events), room)
