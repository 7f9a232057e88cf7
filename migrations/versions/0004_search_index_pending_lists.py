"""Large pending lists for the trigram indexes, merged in the background.

GIN indexes take new entries into a pending list and merge it into the index when it
outgrows gin_pending_list_limit (4 MB by default), in whichever insert outgrew it. At
ingest rates that was several times a second: the group commit holding that insert
waited ~70 ms, and the merge's CPU sat on the ingest path. With 64 MB lists, the
serving process merges them itself every SEARCH_INDEX_MERGE_MS, on a connection of its
own (ingest/maintenance.py), so the merge runs beside ingestion instead of inside it;
the limit is only a backstop for when that task is off or falls behind.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = ("ix_events_metadata_trgm", "ix_events_type_trgm")
PENDING_LIST_KB = 65536


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} SET (gin_pending_list_limit = {PENDING_LIST_KB})")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} RESET (gin_pending_list_limit)")
