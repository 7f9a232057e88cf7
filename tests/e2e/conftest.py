import pytest

from .server import LiveServer, fresh_database_url


@pytest.fixture
def live_server_factory(tmp_path):
    """Start real servers; every one is stopped after the test."""
    servers: list[LiveServer] = []

    def start(mode: str = "eventlet", database_url: str | None = None, **env) -> LiveServer:
        server = LiveServer(database_url or fresh_database_url(tmp_path), mode=mode, **env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["eventlet", "threading"])
def live_server(request, live_server_factory) -> LiveServer:
    return live_server_factory(mode=request.param)
