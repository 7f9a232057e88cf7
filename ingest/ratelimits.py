"""Per-tenant rate limits (Flask-Limiter), counted in events for ingestion.

Each decorator here must sit *below* an auth decorator: the key and the limit
come from the principal that authentication stored on ``g``.
"""

from __future__ import annotations

from flask import current_app, g

from .extensions import limiter


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
