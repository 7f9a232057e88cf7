"""Credentials → who is calling: the admin, or one tenant. Keys, tokens and decorators."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import jwt
from cachetools import TTLCache
from flask import current_app, g, request
from limits import parse as parse_rate_limit

from . import extensions
from .errors import AuthenticationFailed, Forbidden, RateLimited, TenantDisabled
from .models import ApiKey, Tenant, utcnow
from .ratelimits import retry_after

API_KEY_PREFIX = "ik_"
_JWT_ALGORITHM = "HS256"
_JWT_AUDIENCE = "ingest:tenant"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as. ``tenant_id`` is None for the admin."""

    tenant_id: int | None
    rate_limit: int | None = None
    via: str = "admin"  # "admin", "api_key" or "jwt"
    key_id: int | None = None  # the API key's row, when via == "api_key"
    key_expires_at: datetime | None = None  # a key in its rotation's grace period
    disabled: bool = False  # the tenant's: valid credentials, refused with 403

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None


@dataclass(frozen=True)
class NewApiKey:
    key: str
    prefix: str
    digest: str


def hash_api_key(key: str) -> str:
    # Keys carry 256 bits of entropy, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


# "ik_" and 9 characters of the key's 43: 54 random bits, enough to tell a tenant's keys
# apart (a clash within one tenant is refused by a unique constraint, and drawn again).
PREFIX_LENGTH = 12


def generate_api_key() -> NewApiKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(key=key, prefix=key[:PREFIX_LENGTH], digest=hash_api_key(key))


# The time credentials are judged at: the models' clock (tests move it with time-machine).
now = utcnow


def issue_token(tenant_id: int, key_id: int | None = None) -> tuple[str, int]:
    """A short-lived HS256 JWT scoped to one tenant; returns (token, seconds to expiry).

    A token minted with an API key names it (claim "key"), and dies with it: revoking a
    leaked key also refuses the tokens minted with it, not only after their expiry.
    """
    ttl = current_app.config["TOKEN_TTL_SECONDS"]
    moment = time.time()
    # iat rounds down (never in the future); exp rounds up, so the token lives at least
    # the ``expires_in`` we announce.
    claims = {
        "sub": str(tenant_id),
        "aud": _JWT_AUDIENCE,
        "iat": int(moment),
        "exp": math.ceil(moment) + ttl,
    }
    if key_id is not None:
        claims["key"] = key_id
    token = jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=_JWT_ALGORITHM)
    return token, ttl


class CredentialCache:
    """Recently verified credentials → principal, so hot clients skip a query per request.

    Entries live ``ttl`` seconds; a changed rate limit is picked up within that time.
    Only successful lookups are cached: API keys by their hash (never the key itself),
    verified JWTs by the tenant id they name.
    """

    def __init__(self, ttl: float, size: int = 10_000):
        self._entries: TTLCache = TTLCache(maxsize=size, ttl=ttl)
        self._lock = threading.Lock()
        # Bumped by every forget: a lookup that began before one must not cache what it
        # read, or a key revoked while it was in flight would be cached as valid.
        self.generation = 0

    def get(self, key: str) -> Principal | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, principal: Principal, generation: int) -> None:
        with self._lock:
            if generation == self.generation:
                self._entries[key] = principal

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def forget_tenant(self, tenant_id: int) -> None:
        """Drop every credential of a tenant (changed, revoked or removed)."""
        with self._lock:
            self.generation += 1
            for key, principal in list(self._entries.items()):
                if principal.tenant_id == tenant_id:
                    del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


def _credential_cache() -> CredentialCache:
    return current_app.extensions["credential_cache"]


def _tenant_from_api_key(key: str) -> Principal | None:
    digest = hash_api_key(key)
    cache = _credential_cache()
    principal = cache.get(digest)
    if principal is None:
        generation = cache.generation
        principal = _principal_for_key(digest)
        if principal is None:
            return None
        cache.put(digest, principal, generation)
    if not _still_valid(principal):
        cache.forget(digest)
        return None
    current_app.extensions["key_usage"].note(principal.key_id)
    return principal


def _principal_for_key(digest: str) -> Principal | None:
    row = _key_row(ApiKey.key_hash == digest)
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return _key_principal(row, via="api_key")


def _key_row(which):
    return extensions.db.session.execute(
        extensions.db.select(
            ApiKey.id,
            ApiKey.key_hash,
            ApiKey.expires_at,
            ApiKey.revoked_at,
            Tenant.id.label("tenant_id"),
            Tenant.rate_limit,
            Tenant.disabled,
            Tenant.deleting_since,
        )
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(which)
    ).first()


def _key_principal(row, via: str) -> Principal | None:
    """The principal of a key's row (with its tenant's), unless revoked or being deleted."""
    if row.revoked_at is not None or row.deleting_since is not None:
        return None
    return Principal(
        tenant_id=row.tenant_id,
        rate_limit=row.rate_limit,
        via=via,
        key_id=row.id,
        key_expires_at=row.expires_at,
        disabled=row.disabled,
    )


def _still_valid(principal: Principal) -> bool:
    """Whether a cached principal's key (if any) has not expired since it was cached."""
    return principal.key_expires_at is None or principal.key_expires_at > now()


def _tenant_from_jwt(token: str) -> Principal | None:
    try:
        claims = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[_JWT_ALGORITHM],
            audience=_JWT_AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
        tenant_id = int(claims["sub"])
        key_id = claims.get("key")
        if key_id is not None and (type(key_id) is not int or not 0 < key_id < 2**31):
            return None
    except (jwt.InvalidTokenError, ValueError):
        return None
    # The signature proved the claims; the cache only spares the lookup, as for keys.
    cache_key = f"jwt-tenant:{tenant_id}:{key_id}"
    cache = _credential_cache()
    principal = cache.get(cache_key)
    if principal is None:
        generation = cache.generation
        principal = _principal_for_token(tenant_id, key_id)
        if principal is None:
            return None
        cache.put(cache_key, principal, generation)
    return principal if _still_valid(principal) else None


def _principal_for_token(tenant_id: int, key_id: int | None) -> Principal | None:
    if key_id is not None:
        row = _key_row(ApiKey.id == key_id)
        if row is None or row.tenant_id != tenant_id:
            return None
        return _key_principal(row, via="jwt")
    tenant = extensions.db.session.get(Tenant, tenant_id)
    if tenant is None or tenant.deleting_since is not None:
        return None
    return Principal(
        tenant_id=tenant.id, rate_limit=tenant.rate_limit, via="jwt", disabled=tenant.disabled
    )


def resolve_credentials(api_key: str | None, bearer: str | None) -> Principal | None:
    """The principal for these credentials, or None. Used by HTTP and Socket.IO alike."""
    if api_key:
        return _tenant_from_api_key(api_key)
    if not bearer:
        return None
    if hmac.compare_digest(bearer.encode(), current_app.config["ADMIN_TOKEN"].encode()):
        return Principal(tenant_id=None)
    return _tenant_from_jwt(bearer)


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _auth_failure_limit():
    return parse_rate_limit(current_app.config["AUTH_FAILURE_RATE_LIMIT"])


def _failure_keys() -> tuple[str, str, str]:
    # Prefixed like every other limit: deployments sharing a Redis keep their own counts.
    prefix = current_app.config["RATELIMIT_KEY_PREFIX"]
    return prefix, "auth-failures", request.remote_addr or "unknown"


def _limits_enabled() -> bool:
    # With RATELIMIT_ENABLED off, Flask-Limiter never builds its storage.
    return current_app.config["RATELIMIT_ENABLED"]


def count_failed_attempt() -> None:
    """Count a failed authentication against the caller's address (HTTP or Socket.IO)."""
    if _limits_enabled():
        extensions.limiter.limiter.hit(_auth_failure_limit(), *_failure_keys())


def ensure_not_locked_out() -> None:
    """RateLimited if the caller's address has failed authentication too often."""
    if not _limits_enabled():
        return
    limit = _auth_failure_limit()
    keys = _failure_keys()
    if not extensions.limiter.limiter.test(limit, *keys):
        reset_at, _ = extensions.limiter.limiter.get_window_stats(limit, *keys)
        raise RateLimited(
            "Too many failed authentication attempts from this address.",
            headers=retry_after(reset_at),
        )


@dataclass(frozen=True)
class Refusals:
    """What a failed authentication says, in the words of the transport it came by."""

    missing: str  # no credentials at all
    invalid: str
    misplaced_key: str  # an API key sent where a token goes
    disabled: str = "This tenant is disabled; an administrator can enable it again."


HTTP_REFUSALS = Refusals(
    missing="Send an API key in X-API-Key or a token in 'Authorization: Bearer'.",
    invalid="Invalid, expired or revoked credentials.",
    misplaced_key="That is an API key: send it in the X-API-Key header. "
    "'Authorization: Bearer' takes the admin token or a tenant JWT.",
)


def verify_credentials(api_key: str | None, bearer: str | None, refusals: Refusals) -> Principal:
    """The principal these credentials name, for HTTP and Socket.IO alike.

    Only failures are limited: valid credentials pass even from an address that is
    locked out, and a failure from one is RateLimited (and not counted again);
    otherwise it is counted and AuthenticationFailed, saying one of ``refusals``.
    """
    principal = resolve_credentials(api_key, bearer) if api_key or bearer else None
    if principal is not None:
        if principal.disabled:
            # Valid credentials (not counted as a failure), of a tenant switched off.
            raise TenantDisabled(refusals.disabled)
        return principal
    ensure_not_locked_out()
    count_failed_attempt()
    if not api_key and not bearer:
        raise AuthenticationFailed(refusals.missing)
    if bearer and bearer.startswith(API_KEY_PREFIX):
        raise AuthenticationFailed(refusals.misplaced_key)
    raise AuthenticationFailed(refusals.invalid)


def authenticate() -> Principal:
    """The principal of the current request, or AuthenticationFailed. Cached on ``g``."""
    if "principal" in g:
        return g.principal
    api_key = request.headers.get("X-API-Key")
    principal = verify_credentials(api_key, None if api_key else _bearer_token(), HTTP_REFUSALS)
    g.principal = principal
    g.tenant_id = principal.tenant_id
    return principal


def refuse_expiring_key(principal: Principal, what: str) -> None:
    """Forbidden for a key in its rotation's grace (or a token minted with one).

    A rotation must contain a leaked key: in its grace it may still send and read
    events, but not make what outlives it (keys, webhook endpoints, their secrets).
    """
    if principal.key_expires_at is not None:
        raise Forbidden(
            f"{what} take a current key or the admin token: this key is in a rotation's "
            "grace period."
        )


def reconfirm() -> None:
    """Check a tenant request's credentials again once its body is read, before it writes.

    A client may take its time sending a body (each read may wait
    REQUEST_BODY_TIMEOUT_SECONDS): a request authenticated before its key was revoked,
    or its tenant disabled or deleted, must not then get its write done (a held-open
    request of a leaked key minted a new key minutes after the revocation).
    """
    principal = g.get("principal")
    if principal is None or principal.is_admin:
        return
    api_key = request.headers.get("X-API-Key")
    again = resolve_credentials(api_key, None if api_key else _bearer_token())
    if again is None:
        raise AuthenticationFailed(HTTP_REFUSALS.invalid)
    if again.disabled:
        raise TenantDisabled(HTTP_REFUSALS.disabled)
    # What the request may do is judged as of now: its key may have gone into a
    # rotation's grace meanwhile (and may then no longer make keys).
    g.principal = again


def require_admin(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not authenticate().is_admin:
            raise Forbidden("This needs the admin token.")
        return view(*args, **kwargs)

    return wrapper


def require_tenant(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if authenticate().is_admin:
            raise Forbidden(
                "Events and webhooks belong to a tenant: use its API key, or a token from "
                "POST /api/v1/tenants/<id>/token."
            )
        return view(*args, **kwargs)

    return wrapper


def require_any(view):
    """Admin or any tenant; the view checks which tenant it may see."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        authenticate()
        return view(*args, **kwargs)

    return wrapper
