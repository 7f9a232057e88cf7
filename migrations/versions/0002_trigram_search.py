"""Trigram indexes for `q` search on PostgreSQL.

`q` is a case-insensitive substring match on the type and the metadata text. On
PostgreSQL, pg_trgm GIN indexes on exactly the expressions the query uses let it
find matches without reading every event; SQLite keeps its scan.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_events_metadata_trgm ON events "
        "USING gin (lower(CAST(metadata AS TEXT)) gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_events_type_trgm ON events "
        "USING gin (lower(type) gin_trgm_ops)"
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_events_type_trgm")
    op.execute("DROP INDEX IF EXISTS ix_events_metadata_trgm")
