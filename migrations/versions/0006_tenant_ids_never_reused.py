"""Tenant ids are never reused on SQLite (AUTOINCREMENT).

Without AUTOINCREMENT, SQLite hands out max(rowid) + 1: remove the newest tenant and
the next one gets its id, and with it every JWT and cached credential that named the
old one. PostgreSQL's sequences never go back, so it is unchanged.

SQLite can only add AUTOINCREMENT by rebuilding the table; migrations/env.py turns
foreign keys off for the migration's connection, or dropping the old table would
cascade to every event.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _rebuild_tenants(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "tenants", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade():
    _rebuild_tenants(autoincrement=True)


def downgrade():
    _rebuild_tenants(autoincrement=False)
