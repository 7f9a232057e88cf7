"""Per-tenant rate limits (Flask-Limiter), counted in events for ingestion.

Each decorator here must sit *below* an auth decorator: the key and the limit
come from the principal that authentication stored on ``g``.
"""

from __future__ import annotations

import logging
import time

from flask import current_app, g
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.storage.base import SlidingWindowCounterSupport

from .extensions import limiter

log = logging.getLogger("ingest.ratelimits")


def _tenant_key() -> str:
    return f"tenant:{g.principal.tenant_id}"


def _ingest_limit() -> str:
    per_minute = g.principal.rate_limit
    return f"{per_minute}/minute" if per_minute else current_app.config["TENANT_RATE_LIMIT_DEFAULT"]


def _read_limit() -> str:
    return current_app.config["TENANT_READ_RATE_LIMIT"]


def _events_in_request() -> int:
    # Set by the handler's body parser, which the batch handler runs through
    # ``count_events`` before the limit is checked.
    return max(1, g.get("event_count", 1))


# Single and batch ingestion draw on one budget per tenant; a batch of n costs n.
limit_ingest = limiter.shared_limit(
    _ingest_limit, scope="ingest", key_func=_tenant_key, cost=_events_in_request
)
limit_reads = limiter.shared_limit(_read_limit, scope="read", key_func=_tenant_key)


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
        self._down_until = 0.0
        self.degraded = False

    @property
    def base_exceptions(self):
        return ()  # failures of Redis are handled here, never raised

    @property
    def using_fallback(self) -> bool:
        return time.monotonic() < self._down_until

    def _call(self, method: str, *args, **kwargs):
        if not self.using_fallback:
            try:
                result = getattr(self.primary, method)(*args, **kwargs)
            except Exception as error:
                if not self.degraded:
                    log.warning("rate limit storage unreachable, counting in memory: %s", error)
                self.degraded = True
                self._down_until = time.monotonic() + self.RETRY_SECONDS
            else:
                if self.degraded:
                    log.warning("rate limit storage reachable again")
                    self.degraded = False
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
