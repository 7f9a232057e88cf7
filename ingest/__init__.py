"""ingest: a multi-tenant event ingestion service (Flask + Socket.IO)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from flask.sessions import NullSession, SessionInterface
from sqlalchemy import event as sa_event
from werkzeug.middleware.proxy_fix import ProxyFix

from . import cli, fanout, lifecycle, middleware, ratelimits, realtime
from .auth import CredentialCache
from .config import data_dir, load_config
from .deliveries.worker import DeliveryWorker
from .errors import register_error_handlers
from .extensions import cors, db, green_process, limiter, migrate, socketio
from .services.ingestion import GroupCommitter
from .services.webhooks import queue_deliveries

RATE_LIMIT_HEADERS = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
]


def create_app(test_config: Mapping | None = None) -> Flask:
    # DATA_DIR: the installed package's default folder may not be writable (in the image).
    app = Flask(
        __name__, instance_path=data_dir(), instance_relative_config=True, static_folder=None
    )
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)
    app.json.sort_keys = False
    # /api/v1/events/ is /api/v1/events: a trailing slash is a typo, not another resource.
    app.url_map.strict_slashes = False
    # No redirect for "//": Flask answers routing redirects in HTML, outside the envelope.
    app.url_map.merge_slashes = False
    # The API keeps no cookie sessions; skipping Flask's saves work on every request.
    app.session_interface = NoSessions()
    _configure_logging(app)
    _ensure_instance_folder(app)
    _compact_json_columns(app)

    middleware.init_app(app)
    db.init_app(app)
    _tune_sqlite(app)
    migrate.init_app(app, db, directory=_migrations_dir())
    limiter.init_app(app)
    ratelimits.init_app(app)
    cors.init_app(
        app,
        resources={r"/api/*": {"origins": app.config["CORS_ORIGINS"]}},
        # "*" alone means any origin: answer "*" rather than echoing each Origin back.
        send_wildcard=app.config["CORS_ORIGINS"] == ["*"],
        allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
        expose_headers=[*RATE_LIMIT_HEADERS, "X-Request-ID"],
    )
    socketio.init_app(
        app,
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        client_manager=realtime.make_client_manager(
            app.config["SOCKETIO_MESSAGE_QUEUE"], app.config["SOCKETIO_CHANNEL"]
        ),
        cors_allowed_origins=app.config["CORS_ORIGINS"],
        # Credentials travel in the auth payload, never in cookies: no origin needs them.
        cors_credentials=False,
    )
    fanout.install(socketio.server, public_paths_only=app.config["EVENTLET_PUBLIC_PATHS_ONLY"])
    # Outside the Socket.IO middleware that init_app wrapped around the app, so that
    # its answers get the headers too, and ProxyFix outermost: Socket.IO and the
    # headers' https check see the client's address and scheme, not the proxy's.
    app.wsgi_app = middleware.SecurityHeaders(app.wsgi_app)
    if app.config["TRUSTED_PROXIES"]:
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    app.extensions["credential_cache"] = CredentialCache(ttl=app.config["CREDENTIAL_CACHE_SECONDS"])
    lifecycle.init_app(app)
    worker = app.extensions["webhook_worker"] = DeliveryWorker(app)
    # What follows a commit of new events: webhook deliveries queued in its transaction,
    # then the events pushed to Socket.IO rooms and the delivery worker woken.
    app.extensions["group_commit"] = GroupCommitter(
        max_events=app.config["GROUP_COMMIT_MAX_EVENTS"],
        enabled=app.config["GROUP_COMMIT"],
        store_hooks=[queue_deliveries],
        subscribers=[realtime.publish_events, worker.events_stored],
    )
    register_error_handlers(app)
    cli.init_app(app)

    from . import events, health, tenants, web, webhooks

    app.register_blueprint(tenants.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(web.bp)
    if app.config["BENCH_ROUTES"]:
        from . import bench

        app.register_blueprint(bench.bp)
    return app


class NoSessions(SessionInterface):
    """No cookie sessions: credentials travel in headers on every request."""

    def open_session(self, app, request):
        return NullSession()

    def save_session(self, app, session, response):
        return None

    def make_null_session(self, app):
        return NullSession()


def _migrations_dir() -> str:
    return str(Path(__file__).resolve().parent.parent / "migrations")


def _configure_logging(app: Flask) -> None:
    # The process id tells a server's lines from its webhook worker's (deliveries/process.py).
    logging.basicConfig(
        level=app.config["LOG_LEVEL"],
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s",
    )


def _ensure_instance_folder(app: Flask) -> None:
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)


def _compact_json_columns(app: Flask) -> None:
    # Keep non-ASCII text as itself so `q` search matches it, and store no spare spaces.
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    options.setdefault(
        "json_serializer",
        lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")),
    )


# Below this many rows an insert stays on the hub: a tpool call costs ~80 µs of CPU,
# as much as ~3 rows of B-tree work, and under moderate load most groups are small.
_OFFLOADED_INSERT_ROWS = 64
# How long a writer waits for SQLite's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _writes_off_the_hub(engine) -> None:
    """Under eventlet, run SQLite's commits (and their fsync) and big inserts in a native thread.

    sqlite3 is C code that eventlet cannot make cooperative: a commit blocks every
    greenlet of the process for the length of an fsync, and a group commit's insert
    for the length of its B-tree work (~30 µs a row with this schema's indexes: a
    5000-event group held every connection for ~0.15 s). tpool runs them in a real
    thread, on another core, while the hub goes on serving (file databases are opened
    with check_same_thread=False, and the calling greenlet waits, so the connection is
    never used from two places at once). Nothing changes in threading mode.
    """
    if not green_process():
        return
    from eventlet import tpool

    dialect = engine.dialect
    insert_here = dialect.do_executemany

    def do_executemany(cursor, statement, parameters, context=None):
        if len(parameters) < _OFFLOADED_INSERT_ROWS:
            return insert_here(cursor, statement, parameters, context)
        return tpool.execute(cursor.executemany, statement, parameters)

    execute_here = dialect.do_execute

    def do_execute(cursor, statement, parameters, context=None):
        # Deletes come in batches of up to thousands of rows (the purge, pruning of
        # webhook deliveries): ~13 ms of B-tree work for 1000 events, on the hub, held
        # up every request of the process, and another tenant's p99 tripled meanwhile.
        if statement.startswith("DELETE"):
            return tpool.execute(cursor.execute, statement, parameters)
        return execute_here(cursor, statement, parameters, context)

    dialect.do_commit = lambda dbapi_connection: tpool.execute(dbapi_connection.commit)
    dialect.do_executemany = do_executemany
    dialect.do_execute = do_execute
    _one_writer_at_a_time(engine)


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _one_writer_at_a_time(engine) -> None:
    """Under eventlet, a process's write transactions on SQLite take turns on a green lock.

    SQLite lets one transaction write at a time; another writer waits in its busy
    handler, a C sleep that blocks the whole hub. If the transaction it waits for is
    this process's own, paused at a yield (its commit in tpool, say), that transaction
    can never finish: both wait until busy_timeout fails the second ("database is
    locked") after 10 s of a frozen process. The webhook worker's claims and outcomes
    write beside the group commit, so this happened under load. Waiting on a green lock
    instead lets the holder finish.

    Writers in other processes (the webhook worker beside the server, a CLI command)
    hold SQLite's lock too: the turn's holder takes it first (_begin_immediately).
    """
    from eventlet.semaphore import Semaphore

    turn = Semaphore(1)
    holders: set[int] = set()  # ids of the DBAPI connections holding the turn
    dialect = engine.dialect

    @sa_event.listens_for(engine, "before_cursor_execute")
    def _take_turn(connection, _cursor, statement, _parameters, _context, _executemany):
        key = id(connection.connection.dbapi_connection)
        if key not in holders and statement.lstrip()[:7].upper().startswith(_WRITES):
            turn.acquire()
            holders.add(key)
            sqlite = connection.connection.dbapi_connection
            if not sqlite.in_transaction:
                _begin_immediately(sqlite)

    def ending(end):
        def do_end(dbapi_connection):
            # The pool's proxy, or the connection itself: the same key either way.
            key = id(getattr(dbapi_connection, "dbapi_connection", dbapi_connection))
            try:
                end(dbapi_connection)
            finally:
                if key in holders:
                    holders.discard(key)
                    turn.release()

        return do_end

    dialect.do_commit = ending(dialect.do_commit)
    dialect.do_rollback = ending(dialect.do_rollback)
    # A connection closed mid-transaction (its greenlet killed, say) ends its turn too.
    dialect.do_close = ending(dialect.do_close)


def _begin_immediately(sqlite) -> None:
    """Take SQLite's write lock for the transaction about to write, waiting greenly.

    Left to the statement, the wait for another process's writer would be spent in
    SQLite's busy handler: a C sleep that froze every request of this process, in
    steps growing to 100 ms while the other process took the lock again and again
    (make bench: the 201-to-receiver p99 went from 26 to 150 ms with the webhook worker
    in a process beside the server). Here the lock is tried without waiting, and
    between tries this greenlet sleeps, a few milliseconds at most, for up to the
    same busy timeout.
    """
    import eventlet

    sqlite.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = 0.0005
        while True:
            try:
                sqlite.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
            eventlet.sleep(pause)
            pause = min(pause * 2, 0.005)
    finally:
        sqlite.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _unicode_lower(value):
    return value.lower() if isinstance(value, str) else value


def _tune_sqlite(app: Flask) -> None:
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    synchronous = app.config["SQLITE_SYNCHRONOUS"]

    with app.app_context():
        _writes_off_the_hub(db.engine)

        @sa_event.listens_for(db.engine, "connect")
        def _on_connect(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            # WAL lets readers run beside the writer; busy_timeout makes writers queue
            # instead of failing with "database is locked".
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            # `q` search folds case as PostgreSQL does ("ÉCOLE" finds "école"), which
            # SQLite's own lower() does for ASCII only (services/events.py, lowered).
            dbapi_connection.create_function("unicode_lower", 1, _unicode_lower, deterministic=True)
