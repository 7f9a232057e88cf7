"""`q` search moves to a table of its own, filled in the background.

The trigram indexes on events (0002) were maintained inside every insert: ~160 µs of
PostgreSQL's CPU per event, over half of an insert's cost, in the transaction that
every request of a group commit waits on (README, Performance). event_search holds
the text `q` matches (type and metadata), with the same trigram indexes; a statement trigger queues
each new event in event_search_pending within the inserting transaction (so nothing
committed can be missed, whichever node or transaction stored it), and the serving
process moves queued events into event_search every SEARCH_INDEX_MERGE_MS
(ingest/maintenance.py). Searches scan the queue as well, so results stay exact.

The tables exist on every backend, so the schema is the same everywhere; only
PostgreSQL has the indexes and the trigger, and only it searches through them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copies of the names in ingest/models.py: a migration is a snapshot.
SEARCH_INDEXES = {
    "ix_event_search_metadata_trgm": "lower(metadata_text)",
    "ix_event_search_type_trgm": "lower(type_text)",
}
OLD_INDEXES = {
    "ix_events_metadata_trgm": "lower(CAST(metadata AS TEXT))",
    "ix_events_type_trgm": "lower(type)",
}
PENDING_LIST_KB = 65536
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "event_search",
        sa.Column(
            "seq",
            SEQ,
            sa.ForeignKey("events.seq", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("type_text", sa.Text(), nullable=False),
        sa.Column("metadata_text", sa.Text(), nullable=False),
    )
    op.create_index("ix_event_search_tenant_seq", "event_search", ["tenant_id", "seq"])
    op.create_table(
        "event_search_pending",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    # Fill first, index after: building a GIN index in one go beats growing it row by row.
    op.execute(
        "INSERT INTO event_search (seq, tenant_id, type_text, metadata_text) "
        "SELECT seq, tenant_id, type, CAST(metadata AS TEXT) FROM events"
    )
    for index, expression in SEARCH_INDEXES.items():
        op.execute(
            f"CREATE INDEX {index} ON event_search USING gin ({expression} gin_trgm_ops) "
            f"WITH (gin_pending_list_limit = {PENDING_LIST_KB})"
        )
    for index in OLD_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {index}")
    op.execute(
        """
        CREATE FUNCTION ingest_queue_event_search() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO event_search_pending (seq) SELECT seq FROM stored_events;
            RETURN NULL;
        END
        $$
        """
    )
    # Once per INSERT statement (a whole group commit), not once per row.
    op.execute(
        "CREATE TRIGGER events_queue_search AFTER INSERT ON events "
        "REFERENCING NEW TABLE AS stored_events FOR EACH STATEMENT "
        "EXECUTE FUNCTION ingest_queue_event_search()"
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_queue_search ON events")
        op.execute("DROP FUNCTION IF EXISTS ingest_queue_event_search()")
        for index, expression in OLD_INDEXES.items():
            op.execute(
                f"CREATE INDEX IF NOT EXISTS {index} ON events "
                f"USING gin ({expression} gin_trgm_ops) "
                f"WITH (gin_pending_list_limit = {PENDING_LIST_KB})"
            )
    op.drop_table("event_search_pending")
    op.drop_index("ix_event_search_tenant_seq", table_name="event_search")
    op.drop_table("event_search")
