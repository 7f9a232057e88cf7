"""Tenant lifecycle: several API keys per tenant, disabling, deletion and retention.

Keys move from tenants.api_key_hash/api_key_prefix into api_keys, one row each, so a
tenant can rotate with a grace period and revoke one key at a time. Tenants gain
disabled, retention_days and deleting_since; name_key becomes nullable, so that a tenant
being deleted frees its name at once.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Integer(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_used_at", WHEN, nullable=True),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.UniqueConstraint("tenant_id", "prefix", name="uq_api_keys_tenant_prefix"),
        sqlite_autoincrement=True,
    )
    op.execute(
        "INSERT INTO api_keys (tenant_id, key_hash, prefix, created_at) "
        "SELECT id, api_key_hash, api_key_prefix, created_at FROM tenants"
    )
    # recreate: SQLite rebuilds the table; AUTOINCREMENT must survive it (migration 0006).
    with op.batch_alter_table("tenants", table_kwargs={"sqlite_autoincrement": True}) as tenants:
        tenants.drop_column("api_key_hash")
        tenants.drop_column("api_key_prefix")
        tenants.alter_column("name_key", existing_type=sa.String(100), nullable=True)
        tenants.add_column(
            sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        tenants.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
        tenants.add_column(sa.Column("deleting_since", WHEN, nullable=True))
    with op.batch_alter_table("tenants", table_kwargs={"sqlite_autoincrement": True}) as tenants:
        tenants.alter_column("disabled", existing_type=sa.Boolean(), server_default=None)


def downgrade():
    # Tenants being deleted cannot go back to one name each: finish them first.
    op.execute("DELETE FROM tenants WHERE deleting_since IS NOT NULL")
    with op.batch_alter_table("tenants", table_kwargs={"sqlite_autoincrement": True}) as tenants:
        tenants.add_column(sa.Column("api_key_hash", sa.String(64), nullable=True))
        tenants.add_column(sa.Column("api_key_prefix", sa.String(16), nullable=True))
    # The newest key of each tenant comes back; a tenant left with none gets one nobody holds.
    op.execute(
        "UPDATE tenants SET "
        "api_key_hash = COALESCE((SELECT k.key_hash FROM api_keys k WHERE k.tenant_id = "
        "tenants.id AND k.revoked_at IS NULL ORDER BY k.id DESC LIMIT 1), "
        "'revoked:' || CAST(tenants.id AS VARCHAR)), "
        "api_key_prefix = COALESCE((SELECT k.prefix FROM api_keys k WHERE k.tenant_id = "
        "tenants.id AND k.revoked_at IS NULL ORDER BY k.id DESC LIMIT 1), 'ik_')"
    )
    with op.batch_alter_table("tenants", table_kwargs={"sqlite_autoincrement": True}) as tenants:
        tenants.alter_column("api_key_hash", existing_type=sa.String(64), nullable=False)
        tenants.alter_column("api_key_prefix", existing_type=sa.String(16), nullable=False)
        tenants.create_unique_constraint("uq_tenants_api_key_hash", ["api_key_hash"])
        tenants.alter_column("name_key", existing_type=sa.String(100), nullable=False)
        tenants.drop_column("deleting_since")
        tenants.drop_column("retention_days")
        tenants.drop_column("disabled")
    op.drop_table("api_keys")
