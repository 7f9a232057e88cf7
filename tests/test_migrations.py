"""Migrations are the source of truth: they build exactly the models' schema, forward and back."""

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from ingest import create_app
from ingest.config import normalise_database_url
from ingest.extensions import db


@pytest.fixture
def empty_database_url(tmp_path, database_url):
    """A database nobody has migrated yet, on the same backend as the suite."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    base = normalise_database_url(database_url)
    name = f"ingest_migr_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
