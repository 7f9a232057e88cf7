"""Tenant use cases: create, list, look up, issue tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..auth import Principal, generate_api_key, issue_token
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..extensions import db
from ..models import Tenant


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    api_key: str  # shown once, never stored


def create_tenant(name: str, rate_limit: int | None = None) -> CreatedTenant:
    name = name.strip()
    if not name:
        raise ValidationError("The tenant name is blank.", details={"name": ["Must not be blank."]})
    key = generate_api_key()
    tenant = Tenant(
        name=name,
        name_key=name.casefold(),
        api_key_hash=key.digest,
        api_key_prefix=key.prefix,
        rate_limit=rate_limit,
    )
    db.session.add(tenant)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"A tenant named {name!r} already exists (names ignore case).") from None
    return CreatedTenant(tenant=tenant, api_key=key.key)


def list_tenants() -> list[Tenant]:
    return list(db.session.scalars(select(Tenant).order_by(Tenant.id)))


def get_tenant(tenant_id: int, principal: Principal) -> Tenant:
    """The tenant, if this principal may see it. Other tenants look exactly like missing ones."""
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None or not (principal.is_admin or principal.tenant_id == tenant_id):
        raise NotFound(f"No tenant with id {tenant_id}.")
    return tenant


def token_for(tenant_id: int, principal: Principal) -> tuple[str, int]:
    """A short-lived JWT for the tenant: to the admin, or to the tenant holding its API key."""
    tenant = get_tenant(tenant_id, principal)
    if principal.via == "jwt":
        # A token must not mint its successor, or one leaked token lives forever.
        raise Forbidden("Tokens are issued for an API key or the admin token, not for a token.")
    return issue_token(tenant.id)
