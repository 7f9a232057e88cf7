"""The delivery worker in a process beside the server (WEBHOOK_WORKER=process, the default).

Why a process: delivering an event costs about as much CPU as ingesting it, and a
Python process runs on one core at a time. In the server, the worker halved the
single-event ingest rate (make bench: 0.55-0.59 x); beside it, on a core of its own,
ingestion keeps its core.

The server starts `python wsgi.py webhooks-worker` with a Unix socket as its standard
input and writes notifications to it: "s <tenant id>" for events stored, "e <tenant id>"
for endpoints changed, "w" for work to look at now (a test, a retry, a replay). The
worker acts on them as on its own process's (worker.py), so a delivery starts within
milliseconds of the commit. When the socket closes (the server stopped, or was killed
with SIGKILL) the worker sends and records what it holds and exits; if the worker exits,
the server starts another. Writing never holds up the server: notifications are
gathered and written by a task of their own, and dropped if the worker can't take them
(it also polls every WEBHOOK_POLL_MS).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from flask import Flask

from ..extensions import socketio

log = logging.getLogger("ingest.webhooks")

# Restarts of a worker that exits: after this long, doubling up to the most.
RESTART_AFTER_SECONDS = 1.0
RESTART_AFTER_AT_MOST_SECONDS = 30.0
# A worker that ran this long before exiting is restarted after the shortest wait.
RAN_WELL_SECONDS = 60.0
# Notifications not yet written, at most (the worker polls for whatever is dropped).
MAX_PENDING = 10_000
# The worker's niceness: where cores are short, ingestion (and the database serving it)
# goes first, and deliveries take the time left (make bench, docs/performance.md).
WORKER_NICENESS = 10


class Notifications:
    """The server's end: gathers notifications and writes them to the worker's socket."""

    def __init__(self):
        self._stored: set[int] = set()
        self._changed: set[int] = set()
        self._wake = False
        self._ready = socketio.server.eio.create_event()
        self._socket: socket.socket | None = None
        # Commits of several request threads (threading mode) note tenants at once.
        self._lock = threading.Lock()

    def events_stored(self, tenant_id: int) -> None:
        self._note(self._stored, tenant_id)

    def endpoints_changed(self, tenant_id: int) -> None:
        self._note(self._changed, tenant_id)

    def _note(self, tenants: set[int], tenant_id: int) -> None:
        with self._lock:
            if len(tenants) < MAX_PENDING:
                tenants.add(tenant_id)
        self._ready.set()

    def wake(self) -> None:
        self._wake = True
        self._ready.set()

    def connect(self, sock: socket.socket | None) -> None:
        self._socket = sock

    def write_forever(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            message = self._take()
            sock = self._socket
            if sock is None or not message:
                continue
            # The worker gone: the supervisor starts another, which polls.
            with contextlib.suppress(OSError):
                sock.sendall(message)

    def _take(self) -> bytes:
        with self._lock:
            changed, stored = list(self._changed), list(self._stored)
            self._changed.clear()
            self._stored.clear()
            wake, self._wake = self._wake, False
        lines = [f"e {t}\n" for t in changed] + [f"s {t}\n" for t in stored]
        return ("".join(lines) + ("w\n" if wake else "")).encode()


def start_beside(app: Flask, entry_point: str) -> None:
    """Start the worker process and keep it running; this process notifies it."""
    notifications = Notifications()
    app.extensions["webhook_worker"].run_beside(notifications)
    socketio.start_background_task(notifications.write_forever)
    socketio.start_background_task(_supervise, notifications, entry_point)


def _supervise(notifications: Notifications, entry_point: str) -> None:
    wait = RESTART_AFTER_SECONDS
    while True:
        ours, theirs = socket.socketpair()
        try:
            # This interpreter and this server's own entry point: no outside input.
            worker = subprocess.Popen(  # noqa: S603
                [sys.executable, entry_point, "webhooks-worker"], stdin=theirs.fileno()
            )
        except OSError as error:
            log.error("the webhook worker process could not start: %s", error)
            worker = None
        finally:
            theirs.close()
        started = time.monotonic()
        if worker is not None:
            log.info("webhook delivery worker running in process %d", worker.pid)
            notifications.connect(ours)
            notifications.wake()
            while (code := worker.poll()) is None:
                socketio.sleep(1)  # eventlet's wait() would look 100 times a second
            log.warning("the webhook worker process exited (status %s); restarting it", code)
        notifications.connect(None)
        ours.close()
        if time.monotonic() - started > RAN_WELL_SECONDS:
            wait = RESTART_AFTER_SECONDS
        socketio.sleep(wait)
        wait = min(wait * 2, RESTART_AFTER_AT_MOST_SECONDS)


def run_beside_server(app: Flask) -> None:
    """The worker process's main: deliver, following the server's notifications, until it goes."""
    worker = app.extensions["webhook_worker"]
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    worker.start()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(sys.stdin.fileno()))
    socketio.start_background_task(_follow, sock, worker)
    # A stop (docker stop, systemd, timeout) reaches the worker too: it ends as on Ctrl+C.
    signal.signal(signal.SIGTERM, lambda *_: socketio.start_background_task(worker.finish))
    try:
        worker.join()
    except KeyboardInterrupt:  # Ctrl+C reaches the whole process group: the server stops too
        worker.finish()
    log.info("webhook delivery worker (process %d) stopped", os.getpid())


def _follow(sock: socket.socket, worker) -> None:
    pending = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            log.info("the server stopped: sending what is claimed, then stopping")
            worker.finish()
            return
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            kind, _, tenant = line.partition(b" ")
            if kind == b"s" and tenant.isdigit():
                worker.events_stored(int(tenant), [])
            elif kind == b"e" and tenant.isdigit():
                worker.endpoints_changed(int(tenant))
            else:
                worker.wake()
