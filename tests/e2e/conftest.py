import pytest

from .server import LiveServer, drop_database, fresh_database_url


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
