"""Fixtures: a migrated database per test session, a fresh app per test, tenants and clients.

The suite runs against whatever DATABASE_URL / REDIS_URL the environment names
(CI runs it twice: SQLite + in-memory, then PostgreSQL + Redis); without them it
uses a SQLite file in a temporary folder.
"""

from __future__ import annotations

import os
import uuid

import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from ingest import create_app
from ingest.extensions import db
from tests.support import ADMIN_TOKEN, create_tenant


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    app = create_app(_base_config(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def _base_config(database_url: str) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": _normalise(database_url),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256",
        "SOCKETIO_ASYNC_MODE": "threading",
        # Flask-SocketIO's test client cannot run with a message queue.
        "SOCKETIO_MESSAGE_QUEUE": None,
        # Each app gets its own limiter keys, so tests never share counters in Redis.
        "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
    }


def _normalise(url: str) -> str:
    from ingest.config import normalise_database_url

    return normalise_database_url(url)


@pytest.fixture
def make_app(database_url):
    """Build an app on the test database with config overrides; tables are emptied after."""
    apps = []

    def factory(**overrides):
        app = create_app({**_base_config(database_url), **overrides})
        apps.append(app)
        return app

    yield factory
    shared = _normalise(database_url)
    for app in apps:
        if app.config["SQLALCHEMY_DATABASE_URI"] != shared:
            continue
        with app.app_context():
            db.session.remove()
            with db.engine.begin() as connection:
                # event_search goes with events (ON DELETE CASCADE); its queue does not.
                connection.execute(text("DELETE FROM events"))
                connection.execute(text("DELETE FROM event_search_pending"))
                connection.execute(text("DELETE FROM tenants"))
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_headers() -> dict:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def tenant(client) -> dict:
    return create_tenant(client, "acme")


@pytest.fixture
def other_tenant(client) -> dict:
    return create_tenant(client, "globex")
