"""Throwaway databases for the tests and benchmarks: the one place that creates and drops them.

A SQLite database is a new file in a folder the caller owns. A PostgreSQL one is a new
database on the server of the suite's DATABASE_URL when that is PostgreSQL, else on
TEST_POSTGRES_SERVER (by default the local server that CI starts); drop it after use.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

DEFAULT_POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].startswith("postgres")


def libpq_url(url: str) -> str:
    """``url`` as psycopg2 takes it (no SQLAlchemy driver suffix)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def postgres_server(url: str | None = None) -> str:
    """The server part of ``url`` if it names a PostgreSQL database, else the test server."""
    if is_postgres(url):
        return libpq_url(url).rsplit("/", 1)[0]
    if url is None and is_postgres(os.environ.get("DATABASE_URL")):
        return postgres_server(os.environ["DATABASE_URL"])
    return os.environ.get("TEST_POSTGRES_SERVER", DEFAULT_POSTGRES_SERVER).rstrip("/")


def connect(url: str, **kwargs):
    import psycopg2

    return psycopg2.connect(libpq_url(url), **kwargs)


def postgres_answers(server: str | None = None) -> str | None:
    """None if the server takes a connection, else why not."""
    try:
        connect(postgres_server(server) + "/postgres", connect_timeout=3).close()
    except Exception as error:  # psycopg2 missing, server away, refused login, ...
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
    return None


def _admin(server: str, statement: str) -> None:
    conn = connect(server + "/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


def create_postgres_database(server: str | None = None, prefix: str = "ingest_test") -> str:
    """A new, empty database on ``server`` (see postgres_server); returns its URL."""
    server = postgres_server(server)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin(server, f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database made here, connections and all; SQLite files stay put."""
    if is_postgres(url):
        server, name = libpq_url(url).rsplit("/", 1)
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_database(folder: Path, like: str | None = None, prefix: str = "ingest_test") -> str:
    """An empty database on the backend of ``like`` (default: the suite's DATABASE_URL)."""
    like = os.environ.get("DATABASE_URL") if like is None else like
    if is_postgres(like):
        return create_postgres_database(like, prefix)
    return f"sqlite:///{Path(folder) / f'{prefix}-{uuid.uuid4().hex[:8]}.db'}"


class Databases:
    """Databases made for one test or session, all dropped by ``drop_all()``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.made: list[str] = []

    def new(self, postgres: bool = False, prefix: str = "ingest_test") -> str:
        """On the suite's backend, or on PostgreSQL whatever the suite uses."""
        if postgres:
            url = create_postgres_database(prefix=prefix)
        else:
            url = new_database(self.folder, prefix=prefix)
        self.made.append(url)
        return url

    def drop_all(self) -> None:
        while self.made:
            drop_database(self.made.pop())
