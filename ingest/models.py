"""Database models: tenants, their keys, events and webhooks."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stores UTC on every backend and always hands back an aware datetime.

    SQLite has no time zones; without this, values would come back naive there
    and aware on PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect):
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # The text SQLAlchemy's SQLite DATETIME stores ("2026-11-26 17:22:36.000123"),
        # made by one C call instead of a seven-field format: this runs for two columns
        # of every event ingested (tests/test_models.py checks the two agree).
        def process(value):
            if value is None:
                return None
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), plain JSON elsewhere.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")


class Tenant(db.Model):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # Case-folded name: uniqueness is case-insensitive on every backend. None once the
    # tenant is being deleted, so that its name is free at once (NULLs never collide).
    name_key: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Switched off by an operator: credentials refused (403), sockets dropped, webhooks
    # held; the data stays.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Events older than this many days are purged; None: DEFAULT_RETENTION_DAYS.
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Set when deletion was asked: the purge (ingest/lifecycle.py) removes the row last.
    deleting_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # Ids are never reused (JWTs and cached credentials name them): SQLite would hand a
    # removed newest tenant's id to the next one without AUTOINCREMENT (migration 0006).
    __table_args__ = {"sqlite_autoincrement": True}

    @property
    def status(self) -> str:
        if self.deleting_since is not None:
            return "deleting"
        return "disabled" if self.disabled else "active"


class ApiKey(db.Model):
    """One of a tenant's API keys. Only a SHA-256 of the key is kept; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first characters: how the API, the dashboard and the CLI name it.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Written at most about once a minute per key and node (ingest/lifecycle.py).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set for the older keys when a new one is made (the rotation's grace period).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        db.UniqueConstraint("tenant_id", "prefix", name="uq_api_keys_tenant_prefix"),
        # Ids are never reused: cached credentials and sockets name them.
        {"sqlite_autoincrement": True},
    )

    def usable_at(self, moment: datetime) -> bool:
        return self.status_at(moment) in ("active", "expiring")

    def status_at(self, moment: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is None:
            return "active"
        return "expiring" if self.expires_at > moment else "expired"


# `q` search on PostgreSQL runs on trigram indexes of event_search (migration 0005), which
# the serving process fills in the background; their pending lists are merged there too
# (ingest/maintenance.py), and their limit is only a backstop (migration 0004).
SEARCH_INDEXES = ("ix_event_search_metadata_trgm", "ix_event_search_type_trgm")
SEARCH_INDEX_STORAGE = {"gin_pending_list_limit": 65536}


class Event(db.Model):
    __tablename__ = "events"

    # Storage order: cursors and replay walk this, never the client-chosen timestamp.
    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(100))
    # "metadata" is reserved on declarative models, hence the attribute name.
    data: Mapped[dict] = mapped_column("metadata", JsonDocument, default=dict)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Idempotent retries: one event per client id per tenant.
        db.UniqueConstraint("tenant_id", "event_id", name="uq_events_tenant_event_id"),
        Index("ix_events_tenant_seq", "tenant_id", "seq"),
        # INCLUDE timestamp: stats become an index-only scan on PostgreSQL (migration 0003).
        Index(
            "ix_events_tenant_type_seq",
            "tenant_id",
            "type",
            "seq",
            postgresql_include=["timestamp"],
        ),
        Index("ix_events_tenant_timestamp", "tenant_id", "timestamp"),
    )


class EventSearch(db.Model):
    """The text `q` matches (type and metadata), per stored event, indexed for search.

    Kept apart from events so that the trigram indexes' upkeep (~160 µs an event, over
    half of PostgreSQL's work for an insert) is not part of the insert that every
    request of a group commit waits on: a trigger queues each new event in
    event_search_pending within the inserting transaction, and the serving process
    moves them here in the background (ingest/maintenance.py). Searches also scan the
    queue, so an event is found from the moment it is stored. Unused on SQLite.
    """

    __tablename__ = "event_search"

    seq: Mapped[int] = mapped_column(
        SequenceNumber,
        ForeignKey("events.seq", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    tenant_id: Mapped[int] = mapped_column(Integer)
    type_text: Mapped[str] = mapped_column(Text)
    metadata_text: Mapped[str] = mapped_column(Text)

    # The same expressions as the search query, as the trigram indexes on events had
    # (migration 0002); the text itself is kept as stored. (tenant_id, seq) lets a
    # search that pages newest-first walk one tenant's rows, not every tenant's.
    __table_args__ = (
        Index("ix_event_search_tenant_seq", "tenant_id", "seq"),
        *(
            Index(
                name,
                func.lower(text(column)),
                postgresql_using="gin",
                postgresql_ops={"lower": "gin_trgm_ops"},
                postgresql_with=SEARCH_INDEX_STORAGE,
            ).ddl_if(dialect="postgresql")
            for name, column in zip(SEARCH_INDEXES, ("metadata_text", "type_text"), strict=True)
        ),
    )


class EventSearchPending(db.Model):
    """Stored events not yet in event_search (filled by a trigger on events, PostgreSQL)."""

    __tablename__ = "event_search_pending"

    seq: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=False)


class WebhookEndpoint(db.Model):
    """A tenant's receiver of its events (ingest/services/webhooks.py)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What the API shows ("wh_…"): not guessable, and says nothing of how many exist.
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    # Event types delivered; empty means every type.
    types: Mapped[list] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(String(500), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Kept as written ("whsec_…"): the service signs with it, so it cannot be hashed.
    secret: Mapped[str] = mapped_column(String(100))
    # The secret before the last rotation, still signing beside the new one until then.
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When its deliveries started failing without a success since (None: not failing).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = {"sqlite_autoincrement": True}


# Delivery states, as the API names them. An attempt in flight is still pending.
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
STATUSES = (PENDING, SUCCEEDED, FAILED)


class WebhookDelivery(db.Model):
    """One message to one endpoint: queued in the transaction that stores its event.

    Its event is read when it is sent, by (tenant_id, event_id); test messages carry
    their own payload. While an attempt is in flight, next_attempt_at is the end of the
    lease of the worker that claimed it (``claim``): past it, another worker takes it.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(SequenceNumber, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(Integer)
    # The event's id: the webhook-id header, the same on every attempt and endpoint.
    event_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # The first 4 KiB of the last response's body.
    last_response: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claim: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # The worker's claims: one endpoint's due deliveries, soonest first.
        Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # An endpoint's delivery log by status, newest first (and what pruning removes).
        Index("ix_webhook_deliveries_endpoint_status", "endpoint_id", "status", "id"),
        # Ids are never reused (the API shows them, and logs name them).
        {"sqlite_autoincrement": True},
    )
