"""Tenant endpoints: thin handlers that parse, call a service, render."""

from flask import Blueprint, g

from .auth import require_admin, require_any
from .payloads import read_json_object
from .schemas import TenantInSchema, tenant_out
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
    return {**tenant_out.dump(created.tenant), "api_key": created.api_key}, 201


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


@bp.post(f"/<{TENANT_ID}:tenant_id>/token")
@require_any
def issue_token(tenant_id: int):
    token, expires_in = service.token_for(tenant_id, g.principal)
    return {"token": token, "token_type": "Bearer", "expires_in": expires_in}
