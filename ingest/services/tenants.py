"""Tenant use cases: create, list, look up, change, delete; their API keys; tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..auth import (
    PREFIX_LENGTH,
    Principal,
    generate_api_key,
    issue_token,
    now,
    refuse_expiring_key,
)
from ..errors import Conflict, Forbidden, NotFound, ValidationError
from ..extensions import db
from ..models import ApiKey, Tenant

# The operator: what the CLI acts as.
ADMIN = Principal(tenant_id=None)

# A prefix that clashes with another key of the same tenant (54 random bits) is drawn again.
_KEY_ATTEMPTS = 3
NAME_KEY_LENGTH = 100
_PREFIX = re.compile(r"[A-Za-z0-9_-]+\Z")
# Keys no longer usable that GET …/keys still lists, newest first (usable ones: all).
INACTIVE_KEYS_LISTED = 50


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    api_key: str  # shown once, never stored
    prefix: str


@dataclass(frozen=True)
class CreatedKey:
    key: object  # the new key as the API shows it (KeyOutSchema's fields)
    api_key: str  # shown once, never stored


def _changes():
    return current_app.extensions["credential_changes"]


def _name_key(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError("The tenant name is blank.", details={"name": ["Must not be blank."]})
    folded = name.casefold()
    if len(folded) > NAME_KEY_LENGTH:
        # Case folding can lengthen a name ("ß" → "ss"): the stored key has room for 100.
        raise ValidationError(
            f"The tenant name is over {NAME_KEY_LENGTH} characters once case-folded.",
            details={"name": [f"At most {NAME_KEY_LENGTH} characters, case-folded."]},
        )
    return folded


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A tenant named {name.strip()!r} already exists (names ignore case).")


def create_tenant(name: str, rate_limit: int | None = None) -> CreatedTenant:
    tenant = Tenant(name=name.strip(), name_key=_name_key(name), rate_limit=rate_limit)
    generated = generate_api_key()
    db.session.add(tenant)
    try:
        db.session.flush()
        db.session.add(
            ApiKey(tenant_id=tenant.id, key_hash=generated.digest, prefix=generated.prefix)
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise _name_taken(name) from None
    return CreatedTenant(tenant=tenant, api_key=generated.key, prefix=generated.prefix)


def list_tenants() -> list[Tenant]:
    return list(db.session.scalars(select(Tenant).order_by(Tenant.id)))


def get_tenant(tenant_id: int, principal: Principal) -> Tenant:
    """The tenant, if this principal may see it. Other tenants look exactly like missing ones."""
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None or not (principal.is_admin or principal.tenant_id == tenant_id):
        raise NotFound(f"No tenant with id {tenant_id}.")
    return tenant


def live_tenant(tenant_id: int, principal: Principal = ADMIN) -> Tenant:
    """The tenant, if this principal may see it and it is not being deleted (else 409)."""
    tenant = get_tenant(tenant_id, principal)
    if tenant.deleting_since is not None:
        raise Conflict(f"Tenant {tenant_id} is being deleted.")
    return tenant


def update_tenant(tenant_id: int, fields: dict) -> Tenant:
    """Change any of name, rate_limit, disabled, retention_days; every node follows at once."""
    tenant = live_tenant(tenant_id)
    values = {k: fields[k] for k in ("rate_limit", "disabled", "retention_days") if k in fields}
    if "name" in fields:
        values.update(name=fields["name"].strip(), name_key=_name_key(fields["name"]))
    try:
        # Only while it is not being deleted: a change racing a DELETE must not give the
        # deleted tenant its name back.
        changed = db.session.execute(
            update(Tenant)
            .where(Tenant.id == tenant.id, Tenant.deleting_since.is_(None))
            .values(**values)
        ).rowcount
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise _name_taken(fields["name"]) from None
    if not changed:
        raise Conflict(f"Tenant {tenant_id} is being deleted.")
    _changes().announce(tenant_id)
    db.session.refresh(tenant)
    return tenant


def delete_tenant(tenant_id: int) -> None:
    """Refuse the tenant's credentials everywhere now; its data goes in the background."""
    tenant = get_tenant(tenant_id, ADMIN)
    if tenant.deleting_since is None:
        # Its name is free at once (NULLs never collide); the row goes last (purge).
        tenant.deleting_since, tenant.name_key = now(), None
        db.session.commit()
    _changes().announce(tenant_id)
    current_app.extensions["purger"].wake()


def token_for(tenant_id: int, principal: Principal) -> tuple[str, int]:
    """A short-lived JWT for the tenant: to the admin, or to the tenant holding its API key."""
    tenant = live_tenant(tenant_id, principal)
    _refuse_tokens(principal, "Tokens")
    return issue_token(tenant.id, principal.key_id)


def _refuse_tokens(principal: Principal, what: str) -> None:
    if principal.via == "jwt":
        # A token must not mint its successor, or one leaked token lives forever.
        raise Forbidden(f"{what} take an API key or the admin token, not a token.")


# --- API keys ------------------------------------------------------------------------------


def _may_manage_keys(principal: Principal, what: str) -> None:
    _refuse_tokens(principal, what)
    refuse_expiring_key(principal, what)


def create_key(tenant_id: int, principal: Principal, grace_seconds: int) -> CreatedKey:
    """A new key; the tenant's other usable keys expire ``grace_seconds`` from now at the latest."""
    live_tenant(tenant_id, principal)
    _may_manage_keys(principal, "New keys")
    moment = now()
    expiry = moment + timedelta(seconds=grace_seconds)
    for _ in range(_KEY_ATTEMPTS):
        generated = generate_api_key()
        db.session.execute(
            update(ApiKey)
            .where(
                ApiKey.tenant_id == tenant_id,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > expiry),
            )
            .values(expires_at=expiry)
        )
        _within_key_limit(tenant_id, moment)
        key = ApiKey(
            tenant_id=tenant_id,
            key_hash=generated.digest,
            prefix=generated.prefix,
            created_at=moment,
        )
        db.session.add(key)
        try:
            db.session.flush()
            # What the answer shows, taken before the commit: a purge racing it may
            # remove the row right after, and reading it again would fail.
            shown = SimpleNamespace(
                id=key.id,
                prefix=key.prefix,
                created_at=moment,
                last_used_at=None,
                expires_at=None,
                revoked_at=None,
                status_at=lambda _moment: "active",
            )
            db.session.commit()
        except IntegrityError:
            # A prefix clash, or the tenant purged meanwhile (its foreign key).
            db.session.rollback()
            live_tenant(tenant_id, principal)
            continue
        _changes().announce(tenant_id)
        return CreatedKey(key=shown, api_key=generated.key)
    raise Conflict("Could not draw a key with a free prefix; try again.")


def _usable(moment):
    return ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > moment)


def _within_key_limit(tenant_id: int, moment) -> None:
    most = current_app.config["MAX_KEYS_PER_TENANT"]
    usable = db.session.scalar(
        select(func.count()).where(ApiKey.tenant_id == tenant_id, *_usable(moment))
    )
    if usable >= most:
        db.session.rollback()
        raise Conflict(
            f"This tenant has {usable} usable keys, the most it may have: revoke one, or "
            "rotate with a shorter grace_seconds."
        )


def list_keys(tenant_id: int, principal: Principal) -> list[ApiKey]:
    """Every usable key, and the latest ones that expired or were revoked; oldest first."""
    tenant = live_tenant(tenant_id, principal)
    moment = now()
    mine = select(ApiKey).where(ApiKey.tenant_id == tenant.id)
    usable = list(db.session.scalars(mine.where(*_usable(moment))))
    inactive = list(
        db.session.scalars(
            mine.where(~and_(*_usable(moment)))
            .order_by(ApiKey.id.desc())
            .limit(INACTIVE_KEYS_LISTED)
        )
    )
    return sorted(usable + inactive, key=lambda key: key.id)


def revoke_key(tenant_id: int, prefix: str, principal: Principal) -> None:
    """Refused from this moment on every node; sockets that used it are disconnected."""
    live_tenant(tenant_id, principal)
    # A token, or a key in its grace, could otherwise revoke the tenant's new key.
    _may_manage_keys(principal, "Revocations")
    if len(prefix) > PREFIX_LENGTH:
        raise ValidationError(
            f"Send the key's prefix (its first {PREFIX_LENGTH} characters, as GET …/keys "
            "lists them), not more. If that was a whole key, it has been in a URL: revoke it.",
            details={"prefix": [f"At most {PREFIX_LENGTH} characters."]},
        )
    key_id = (
        db.session.scalar(
            select(ApiKey.id).where(ApiKey.tenant_id == tenant_id, ApiKey.prefix == prefix)
        )
        if _PREFIX.match(prefix)
        else None
    )
    if key_id is None:
        raise NotFound(f"Tenant {tenant_id} has no key with prefix {prefix!r}.")
    # One guarded statement: a purge racing it removes the row, and nothing fails.
    db.session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    db.session.commit()
    _changes().announce(tenant_id)
