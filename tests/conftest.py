"""Fixtures: a migrated database per test session, a fresh app per test, tenants and clients.

The suite runs against whatever DATABASE_URL / REDIS_URL the environment names
(CI runs it twice: SQLite + in-memory, then PostgreSQL + Redis); without them it
uses a SQLite file in a temporary folder. Tests that need PostgreSQL whatever the
suite's backend get throwaway databases on the local server (tests/databases.py).

A service a test needs that is not there (PostgreSQL, Redis, Chromium) skips that test
with the reason, except in CI (CI=true), where it fails: there, nothing may skip.
"""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest
import redis
from flask_migrate import upgrade
from sqlalchemy import text

# The app reads its settings before a test's overrides apply: without an ADMIN_TOKEN it
# would generate one and keep it in the repository's instance folder. Tests keep theirs
# in a folder of their own (e2e servers and tests that need DATA_DIR set their own).
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="ingest-tests-"))

from ingest import create_app
from ingest.config import normalise_database_url
from ingest.extensions import db
from tests.databases import Databases, postgres_answers
from tests.support import ADMIN_TOKEN, IN_CI, create_tenant, require


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # In CI a skip, whatever raised it, hides a test that did not run: fail it instead.
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
    return report


def _migrate(url: str) -> None:
    app = create_app(_base_config(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def session_databases(tmp_path_factory):
    """Databases made for the whole session, dropped at its end."""
    databases = Databases(tmp_path_factory.mktemp("db"))
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def suite_databases() -> set[str]:
    """The migrated databases that make_app empties after each test (normalised URLs)."""
    return set()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory, suite_databases) -> str:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    _migrate(url)
    suite_databases.add(normalise_database_url(url))
    return url


@pytest.fixture(scope="session")
def postgres_url(database_url, session_databases, suite_databases) -> str:
    """A migrated PostgreSQL database: the suite's own, or one made for this session."""
    if database_url.startswith("postgres"):
        return database_url
    require("PostgreSQL", postgres_answers())
    url = session_databases.new(postgres=True)
    _migrate(url)
    suite_databases.add(normalise_database_url(url))
    return url


@pytest.fixture
def fresh_database(tmp_path):
    """``fresh_database()``: an empty database on the suite's backend; ``postgres=True``:
    on PostgreSQL whatever the suite uses. Every one is dropped after the test."""
    databases = Databases(tmp_path)

    def make(postgres: bool = False) -> str:
        if postgres:
            require("PostgreSQL", postgres_answers())
        return databases.new(postgres=postgres)

    yield make
    databases.drop_all()


@pytest.fixture
def postgres_database(fresh_database) -> str:
    """An empty PostgreSQL database of this test's own, dropped after."""
    return fresh_database(postgres=True)


def _base_config(database_url: str) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256",
        "SOCKETIO_ASYNC_MODE": "threading",
        # Flask-SocketIO's test client cannot run with a message queue.
        "SOCKETIO_MESSAGE_QUEUE": None,
        # Each app gets its own limiter keys, so tests never share counters in Redis.
        "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
    }


@pytest.fixture
def make_app(database_url, suite_databases):
    """Build an app with config overrides, on the suite's database unless ``database_url``
    names another; the tables of the suite's migrated databases are emptied after."""
    apps = []

    def factory(database_url: str = database_url, **overrides):
        app = create_app({**_base_config(database_url), **overrides})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if app.config["SQLALCHEMY_DATABASE_URI"] not in suite_databases:
            continue
        with app.app_context():
            db.session.remove()
            with db.engine.begin() as connection:
                # event_search goes with events (ON DELETE CASCADE); its queue does not.
                connection.execute(text("DELETE FROM events"))
                connection.execute(text("DELETE FROM event_search_pending"))
                connection.execute(text("DELETE FROM tenants"))
            db.engine.dispose()


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    """The Redis on 127.0.0.1:6379, which CI starts (.ci/run) and several nodes can share."""
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        missing = None
    except redis.RedisError:
        missing = f"nothing answers PING at {url}"
    require("Redis", missing)
    return url


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


@pytest.fixture
def cli(app):
    """``cli(*args)``: run a `flask --app wsgi` command of ``app`` (Flask's CLI runner)."""
    runner = app.test_cli_runner()

    def invoke(*args, **kwargs):
        return runner.invoke(args=[str(arg) for arg in args], **kwargs)

    return invoke
