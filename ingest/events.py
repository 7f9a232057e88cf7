"""Event endpoints: thin handlers that parse, call a service, render."""

import functools

from flask import Blueprint, current_app, g, request

from .auth import reconfirm, require_tenant
from .payloads import BatchRejected, read_batch_items, read_json_object
from .ratelimits import charge_ingest, ensure_ingest_budget, limit_reads
from .schemas import (
    BucketSchema,
    EventQuerySchema,
    StatsOutSchema,
    TimeRangeSchema,
    TimeseriesQuerySchema,
    event_json,
)
from .services import events as service
from .services.ingestion import ingest_events
from .validation import event_schema, load, load_each, query_args

bp = Blueprint("events", __name__, url_prefix="/api/v1/events")


def _reads_body(reader):
    """Read the body, charging the tenant's ingest budget for every event in it.

    A tenant with no budget left is refused before its body is read. A batch of n
    costs n, and so does a batch refused while reading (too many events, broken
    lines): n is what was read of it.
    """

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            ensure_ingest_budget()
            try:
                g.body = reader(event_schema().limits.max_json_bytes)
            except BatchRejected as refused:
                charge_ingest(refused.events_read)
                raise
            charge_ingest(len(g.body) if isinstance(g.body, list) else 1)
            return view(*args, **kwargs)

        return wrapper

    return decorator


@bp.post("")
@require_tenant
@_reads_body(read_json_object)
def create_event():
    item = load(event_schema(), g.body, message="The event is invalid; nothing was stored.")
    result = ingest_events(g.tenant_id, [item])
    return result.events[0], 201 if result.created[0] else 200


@bp.post("/batch")
@require_tenant
@_reads_body(
    lambda max_item_bytes: read_batch_items(current_app.config["MAX_BATCH_EVENTS"], max_item_bytes)
)
def create_batch():
    items = load_each(
        event_schema(),
        g.body,
        message="Some events in the batch are invalid (details are keyed by index); "
        "nothing was stored.",
    )
    # Once its body is read and checked (both may take a while): credentials revoked
    # meanwhile store nothing (read_json_object does the same for single events).
    reconfirm()
    result = ingest_events(g.tenant_id, items)
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "ids": [event["id"] for event in result.events],
    }, 201


@bp.get("")
@require_tenant
@limit_reads
def list_events():
    params = load(EventQuerySchema(), query_args(request.args, repeatable={"type"}))
    page, next_cursor = service.list_events(g.tenant_id, service.EventQuery(**params))
    return {"data": [event_json(event) for event in page], "next_cursor": next_cursor}


@bp.get("/stats")
@require_tenant
@limit_reads
def event_stats():
    params = load(TimeRangeSchema(), query_args(request.args, repeatable=set()))
    stats = service.event_stats(g.tenant_id, params.get("since"), params.get("until"))
    return StatsOutSchema().dump(stats)


@bp.get("/timeseries")
@require_tenant
@limit_reads
def event_timeseries():
    params = load(TimeseriesQuerySchema(), query_args(request.args, repeatable=set()))
    buckets = service.event_timeseries(
        g.tenant_id, params.get("since"), params.get("until"), params["interval"]
    )
    return {"interval": params["interval"], "data": BucketSchema(many=True).dump(buckets)}
