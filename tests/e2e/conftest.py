import os
import uuid

import psycopg2
import pytest

from .server import LiveServer, drop_database, fresh_database_url

# Tests that need PostgreSQL whatever database the rest of the suite uses.
POSTGRES = os.environ.get("FAULT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def postgres_database_factory():
    """Make fresh PostgreSQL databases on the local server; they are dropped after."""
    admin = psycopg2.connect(POSTGRES + "/postgres")
    admin.autocommit = True
    made: list[str] = []

    def make() -> str:
        made.append(f"ingest_e2e_pg_{uuid.uuid4().hex[:10]}")
        admin.cursor().execute(f'CREATE DATABASE "{made[-1]}"')
        return f"{POSTGRES}/{made[-1]}"

    yield make
    for name in made:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def postgres_database(postgres_database_factory) -> str:
    return postgres_database_factory()


@pytest.fixture
def fresh_database(tmp_path):
    """Make fresh databases on the suite's backend; PostgreSQL ones are dropped after."""
    made: list[str] = []

    def make() -> str:
        made.append(fresh_database_url(tmp_path))
        return made[-1]

    yield make
    for url in made:
        drop_database(url)


@pytest.fixture
def live_server_factory(fresh_database):
    """Start real servers; every one is stopped after the test."""
    servers: list[LiveServer] = []

    def start(mode: str = "eventlet", database_url: str | None = None, **env) -> LiveServer:
        server = LiveServer(database_url or fresh_database(), mode=mode, **env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["eventlet", "threading"])
def live_server(request, live_server_factory) -> LiveServer:
    return live_server_factory(mode=request.param)
