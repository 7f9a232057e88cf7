"""Tenant endpoints: thin handlers that parse, call a service, render."""

from flask import Blueprint, current_app, g

from .auth import require_admin, require_any
from .payloads import read_json_object, read_optional_json_object
from .ratelimits import limit_key_changes, limit_reads
from .schemas import KeyInSchema, TenantInSchema, TenantPatchSchema, key_out, tenant_out
from .services import tenants as service
from .validation import load

bp = Blueprint("tenants", __name__, url_prefix="/api/v1/tenants")

# Tenant ids are 32-bit integers in the database: a larger id names no tenant (404),
# rather than failing on its way into a query.
TENANT_ID = "int(max=2147483647)"


@bp.post("")
@require_admin
def create_tenant():
    fields = load(TenantInSchema(), read_json_object())
    created = service.create_tenant(fields["name"], fields.get("rate_limit"))
    return {
        **tenant_out.dump(created.tenant),
        "api_key": created.api_key,
        "api_key_prefix": created.prefix,
    }, 201


@bp.get("")
@require_admin
def list_tenants():
    return {"data": tenant_out.dump(service.list_tenants(), many=True)}


@bp.get("/me")
@require_any
def whoami():
    """Who the credentials belong to: the dashboard's first call after sign-in."""
    if g.principal.is_admin:
        return {"role": "admin", "tenant": None}
    return {
        "role": "tenant",
        "tenant": tenant_out.dump(service.get_tenant(g.tenant_id, g.principal)),
    }


@bp.get(f"/<{TENANT_ID}:tenant_id>")
@require_any
def get_tenant(tenant_id: int):
    return tenant_out.dump(service.get_tenant(tenant_id, g.principal))


@bp.patch(f"/<{TENANT_ID}:tenant_id>")
@require_admin
def update_tenant(tenant_id: int):
    fields = load(TenantPatchSchema(), read_json_object())
    return tenant_out.dump(service.update_tenant(tenant_id, fields))


@bp.delete(f"/<{TENANT_ID}:tenant_id>")
@require_admin
def delete_tenant(tenant_id: int):
    service.delete_tenant(tenant_id)
    return {"status": "deleting"}, 202


@bp.post(f"/<{TENANT_ID}:tenant_id>/token")
@require_any
@limit_reads
def issue_token(tenant_id: int):
    token, expires_in = service.token_for(tenant_id, g.principal)
    return {"token": token, "token_type": "Bearer", "expires_in": expires_in}


@bp.post(f"/<{TENANT_ID}:tenant_id>/keys")
@require_any
@limit_key_changes
def create_key(tenant_id: int):
    fields = load(KeyInSchema(), read_optional_json_object())
    grace = fields.get("grace_seconds", current_app.config["KEY_ROTATION_GRACE_S"])
    created = service.create_key(tenant_id, g.principal, grace)
    return {**key_out.dump(created.key), "api_key": created.api_key}, 201


@bp.get(f"/<{TENANT_ID}:tenant_id>/keys")
@require_any
@limit_reads
def list_keys(tenant_id: int):
    return {"data": key_out.dump(service.list_keys(tenant_id, g.principal), many=True)}


@bp.delete(f"/<{TENANT_ID}:tenant_id>/keys/<string(maxlength=200):prefix>")
@require_any
@limit_key_changes
def revoke_key(tenant_id: int, prefix: str):
    service.revoke_key(tenant_id, prefix, g.principal)
    return "", 204
