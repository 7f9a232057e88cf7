"""Webhook endpoints and their deliveries: thin handlers that parse, call a service, render.

Every call counts against the tenant's read budget (RATELIMIT_READS): a replay or a
flood of endpoint changes is bounded like a flood of queries.
"""

from flask import Blueprint, g, request

from .auth import refuse_expiring_key, require_tenant
from .payloads import read_json_object
from .ratelimits import limit_reads
from .schemas import (
    DeliveryQuerySchema,
    ReplaySchema,
    WebhookInSchema,
    WebhookPatchSchema,
    delivery_out,
    webhook_out,
)
from .services import webhooks as service
from .validation import load, query_args

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")

# "wh_" and URL-safe base64; anything else names no endpoint (404).
ENDPOINT = "string(maxlength=40):endpoint_id"


@bp.post("")
@require_tenant
@limit_reads
def create_webhook():
    fields = load(WebhookInSchema(), read_json_object())
    refuse_expiring_key(g.principal, "New webhook endpoints")
    created = service.create_endpoint(g.tenant_id, fields)
    return {**webhook_out.dump(created.endpoint), "secret": created.secret}, 201


@bp.get("")
@require_tenant
@limit_reads
def list_webhooks():
    return {"data": webhook_out.dump(service.list_endpoints(g.tenant_id), many=True)}


@bp.get(f"/<{ENDPOINT}>")
@require_tenant
@limit_reads
def get_webhook(endpoint_id: str):
    return webhook_out.dump(service.get_endpoint(g.tenant_id, endpoint_id))


@bp.patch(f"/<{ENDPOINT}>")
@require_tenant
@limit_reads
def update_webhook(endpoint_id: str):
    fields = load(WebhookPatchSchema(), read_json_object())
    refuse_expiring_key(g.principal, "Changes to webhook endpoints")
    return webhook_out.dump(service.update_endpoint(g.tenant_id, endpoint_id, fields))


@bp.delete(f"/<{ENDPOINT}>")
@require_tenant
@limit_reads
def delete_webhook(endpoint_id: str):
    service.delete_endpoint(g.tenant_id, endpoint_id)
    return "", 204


@bp.post(f"/<{ENDPOINT}>/rotate-secret")
@require_tenant
@limit_reads
def rotate_secret(endpoint_id: str):
    refuse_expiring_key(g.principal, "New webhook secrets")
    return {"secret": service.rotate_secret(g.tenant_id, endpoint_id)}


@bp.post(f"/<{ENDPOINT}>/test")
@require_tenant
@limit_reads
def send_test(endpoint_id: str):
    return delivery_out.dump(service.send_test(g.tenant_id, endpoint_id)), 202


@bp.get(f"/<{ENDPOINT}>/deliveries")
@require_tenant
@limit_reads
def list_deliveries(endpoint_id: str):
    params = load(DeliveryQuerySchema(), query_args(request.args, repeatable=set()))
    page, next_cursor = service.list_deliveries(
        g.tenant_id, endpoint_id, params.get("status"), params["limit"], params.get("cursor")
    )
    return {"data": delivery_out.dump(page, many=True), "next_cursor": next_cursor}


@bp.post(f"/<{ENDPOINT}>/deliveries/<string(maxlength=40):delivery_id>/retry")
@require_tenant
@limit_reads
def retry_delivery(endpoint_id: str, delivery_id: str):
    service.retry_delivery(g.tenant_id, endpoint_id, delivery_id)
    return {"status": "queued"}, 202


@bp.post(f"/<{ENDPOINT}>/replay")
@require_tenant
@limit_reads
def replay(endpoint_id: str):
    fields = load(ReplaySchema(), read_json_object())
    return {"queued": service.replay(g.tenant_id, endpoint_id, fields["since"])}, 202
