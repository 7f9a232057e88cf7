"""Per-tenant rate limits, counted in events for ingestion.

Flask-Limiter owns the configuration, strategy and storage (RATELIMIT_* settings,
Redis or memory). The checks run through its strategy directly rather than its
route decorators: profiling showed the decorators' limit resolution costing ~14% of
an ingest request, for limits that here are always one per route and per tenant.

Each decorator here must sit *below* an auth decorator: the key and the limit come
from the principal that authentication stored on ``g``.
"""

from __future__ import annotations

import functools
import logging
import time

from flask import Flask, current_app, g
from limits import RateLimitItem
from limits import parse as parse_rate_limit
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.storage.base import SlidingWindowCounterSupport

from .errors import RateLimited
from .extensions import limiter
from .outages import Outage

log = logging.getLogger("ingest.ratelimits")


@functools.lru_cache(maxsize=256)
def _parsed(limit: str) -> RateLimitItem:
    return parse_rate_limit(limit)


def _ingest_limit() -> str:
    per_minute = g.principal.rate_limit
    return f"{per_minute}/minute" if per_minute else current_app.config["TENANT_RATE_LIMIT_DEFAULT"]


def _read_limit() -> str:
    return current_app.config["TENANT_READ_RATE_LIMIT"]


def _keys(scope: str) -> tuple[str, str, str]:
    return (current_app.config["RATELIMIT_KEY_PREFIX"], f"tenant:{g.principal.tenant_id}", scope)


def retry_after(reset_at: float) -> dict[str, str]:
    """The Retry-After header for a limit whose window resets at ``reset_at`` (epoch seconds)."""
    return {"Retry-After": str(max(1, int(reset_at - time.time())))}


# Budgets this process saw spent, until their window resets. Only a budget known to be
# spent is looked up before a body is read: every other request asks the storage
# (Redis in production) once, when it is charged, as before.
_spent_until: dict[tuple[str, str, str], float] = {}


def _check(limit: str, scope: str, cost: int) -> None:
    """Spend ``cost`` from the tenant's budget for ``scope``, or raise RateLimited."""
    item = _parsed(limit)
    keys = _keys(scope)
    allowed = limiter.limiter.hit(item, *keys, cost=cost)
    reset_at, remaining = limiter.limiter.get_window_stats(item, *keys)
    if remaining <= 0:
        _spent_until[keys] = reset_at
    elif keys in _spent_until:
        del _spent_until[keys]
    g.rate_limit_headers = {
        "X-RateLimit-Limit": str(item.amount),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(int(reset_at)),
    }
    if not allowed:
        raise RateLimited(
            f"Rate limit exceeded: {limit} for this tenant"
            + (f" (this request counts {cost} events)." if cost > 1 else "."),
            headers=retry_after(reset_at),
        )


def _enabled() -> bool:
    return current_app.config["RATELIMIT_ENABLED"]


def ensure_ingest_budget() -> None:
    """RateLimited before a body is even read, if the tenant has nothing left to spend.

    Asks the storage only when this process last saw the budget spent (another node's
    spending is caught when the request is charged).
    """
    if not _enabled():
        return
    keys = _keys("ingest")
    if _spent_until.get(keys, 0.0) <= time.time():
        return
    if not limiter.limiter.test(_parsed(_ingest_limit()), *keys):
        _check(_ingest_limit(), "ingest", 1)  # refuses, with the usual headers


def charge_ingest(events: int) -> None:
    """Spend ``events`` from the tenant's ingest budget (refused batches too), or raise."""
    if _enabled():
        _check(_ingest_limit(), "ingest", max(1, events))


def _limited(limit_of, scope: str, cost_of=lambda: 1):
    """A per-tenant limit on a route; the admin is not limited."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if _enabled() and not g.principal.is_admin:
                _check(limit_of(), scope, cost_of())
            return view(*args, **kwargs)

        return wrapper

    return decorator


# Single and batch ingestion draw on one budget per tenant (charge_ingest: a batch of n
# costs n, counted as its body is read); reads have a budget of their own.
limit_reads = _limited(_read_limit, "read")
# Keys made and revoked: each is a row kept, and an announcement to every node.
limit_key_changes = _limited(lambda: current_app.config["TENANT_KEY_CHANGES_LIMIT"], "key-changes")


def _add_headers(response):
    for name, value in g.get("rate_limit_headers", {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_headers)


class FailoverStorage(Storage, SlidingWindowCounterSupport):
    """Redis for limits shared by every node; process memory while Redis is unreachable.

    Flask-Limiter's own in-memory fallback swaps in a fixed list of limits, which
    would drop the per-tenant ones; this keeps every limit and only changes where
    the counters live. Redis is retried at most once per ``RETRY_SECONDS``.
    """

    STORAGE_SCHEME = ["failover+redis", "failover+rediss"]
    RETRY_SECONDS = 1.0

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        options.setdefault("socket_connect_timeout", 1)
        options.setdefault("socket_timeout", 1)
        self.primary = RedisStorage(uri.removeprefix("failover+"), **options)
        self.fallback = MemoryStorage()
        self.outage = Outage(
            log,
            went="rate limit storage unreachable, counting in memory: %s",
            came_back="rate limit storage reachable again",
            retry_seconds=self.RETRY_SECONDS,
        )

    @property
    def base_exceptions(self):
        return ()  # failures of Redis are handled here, never raised

    def _call(self, method: str, *args, **kwargs):
        if not self.outage.paused:
            try:
                result = getattr(self.primary, method)(*args, **kwargs)
            except Exception as error:
                self.outage.failed(error)
            else:
                self.outage.succeeded()
                return result
        return getattr(self.fallback, method)(*args, **kwargs)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._call("incr", key, expiry, amount=amount)

    def get(self, key: str) -> int:
        return self._call("get", key)

    def get_expiry(self, key: str) -> float:
        return self._call("get_expiry", key)

    def check(self) -> bool:
        try:
            return self.primary.check()
        except Exception:
            return False

    def reset(self) -> int | None:
        self.fallback.reset()
        return self._call("reset")

    def clear(self, key: str) -> None:
        self.fallback.clear(key)
        return self._call("clear", key)

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1):
        return self._call("acquire_sliding_window_entry", key, limit, expiry, amount)

    def get_sliding_window(self, key: str, expiry: int):
        return self._call("get_sliding_window", key, expiry)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.fallback.clear_sliding_window(key, expiry)
        return self._call("clear_sliding_window", key, expiry)
