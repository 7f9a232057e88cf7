"""Migrations are the source of truth: they build exactly the models' schema, forward and back."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from ingest import create_app
from ingest.config import normalise_database_url
from ingest.extensions import db


@pytest.fixture
def empty_database_url(fresh_database) -> str:
    """A database nobody has migrated yet, on the same backend as the suite."""
    return fresh_database()


def _app(url):
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalise_database_url(url),
            "SOCKETIO_ASYNC_MODE": "threading",
            "SOCKETIO_MESSAGE_QUEUE": None,
        }
    )


# SQLite cannot reflect the PostgreSQL-only expression indexes; PostgreSQL compares them too.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression")
def test_upgrade_builds_exactly_the_models_schema(empty_database_url):
    app = _app(empty_database_url)
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
        db.engine.dispose()


def test_downgrade_to_base_and_up_again(empty_database_url):
    app = _app(empty_database_url)
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        upgrade()
        assert {"tenants", "events"} <= set(inspect(db.engine).get_table_names())
        db.engine.dispose()


def test_tenant_ids_are_never_reused_and_upgrading_keeps_events(empty_database_url):
    app = _app(empty_database_url)
    with app.app_context():
        upgrade(revision="0005")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenants (id, name, name_key, api_key_hash, api_key_prefix, "
                    "created_at) VALUES (7, 'a', 'a', 'h', 'p', '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO events (tenant_id, event_id, type, metadata, timestamp, "
                    "received_at) VALUES (7, 'e', 't', '{}', '2026-01-01 00:00:00', "
                    "'2026-01-01 00:00:00')"
                )
            )
        upgrade()
        with db.engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM events")).scalar() == 1
            connection.execute(text("DELETE FROM events"))
            connection.execute(text("DELETE FROM tenants WHERE id = 7"))
            connection.execute(
                text(
                    "INSERT INTO tenants (name, name_key, disabled, created_at) "
                    "VALUES ('b', 'b', false, '2026-01-01 00:00:00')"
                )
            )
            new_id = connection.execute(text("SELECT id FROM tenants")).scalar()
        assert new_id != 7
        db.engine.dispose()


def test_upgrading_moves_each_tenants_key_into_api_keys_and_back(empty_database_url):
    app = _app(empty_database_url)
    with app.app_context():
        upgrade(revision="0007")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenants (id, name, name_key, api_key_hash, api_key_prefix, "
                    "created_at) VALUES (3, 'a', 'a', :digest, 'ik_abcdefg', "
                    "'2026-01-01 00:00:00')"
                ),
                {"digest": "d" * 64},
            )
        upgrade()
        with db.engine.begin() as connection:
            keys = connection.execute(
                text("SELECT tenant_id, key_hash, prefix, revoked_at FROM api_keys")
            ).all()
            assert [tuple(key) for key in keys] == [(3, "d" * 64, "ik_abcdefg", None)]
            tenant = connection.execute(
                text("SELECT disabled, retention_days, deleting_since FROM tenants")
            ).one()
            assert tuple(tenant) == (False, None, None)
        downgrade(revision="0007")
        with db.engine.begin() as connection:
            row = connection.execute(text("SELECT api_key_hash, api_key_prefix FROM tenants")).one()
            assert tuple(row) == ("d" * 64, "ik_abcdefg")
        db.engine.dispose()
