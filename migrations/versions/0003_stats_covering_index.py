"""Cover stats with an index-only scan on PostgreSQL.

GET /events/stats groups a tenant's events by type and takes min/max of the
timestamp. With the timestamp included in (tenant_id, type, seq), PostgreSQL
answers it from the index alone instead of reading every event row (1M events:
about 240 ms to about 80 ms in `make bench-queries`). SQLite keeps the plain index.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_events_tenant_type_seq", table_name="events")
    op.create_index(
        "ix_events_tenant_type_seq",
        "events",
        ["tenant_id", "type", "seq"],
        postgresql_include=["timestamp"],
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_events_tenant_type_seq", table_name="events")
    op.create_index("ix_events_tenant_type_seq", "events", ["tenant_id", "type", "seq"])
