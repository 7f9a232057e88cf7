"""`flask --app wsgi events tail`: a Socket.IO client of a running server, printing NDJSON.

It follows the tenant the way any subscriber does, so it sees what every node stores
when the nodes share a message queue (REDIS_URL). It signs in with a short-lived
tenant JWT minted here from SECRET_KEY (so the configuration must be the servers'),
a new one at each reconnect, and resumes from the last event it saw (the server
replays what it missed, up to REPLAY_LIMIT).
"""

from __future__ import annotations

import re
import threading
from typing import BinaryIO

import click
import socketio
from flask import Flask

from ..auth import issue_token
from .common import ndjson_line, reader_left


class Tail:
    def __init__(self, app: Flask, tenant_id: int, types: list[str], url: str, out: BinaryIO):
        self.app = app
        self.tenant_id = tenant_id
        self.types = frozenset(types)
        self.url = url
        self.out = out
        # Ctrl+C is this command's to handle: python-socketio's own handler would
        # disconnect from within the signal handler.
        self.client = socketio.Client(reconnection=True, handle_sigint=False)
        for name, handler in {
            "connect": self._connected,
            "connect_error": self._refused,
            "disconnect": self._disconnected,
            "event": self._event,
            "replay_complete": self._replayed,
            "revoked": self._revoked,
        }.items():
            self.client.on(name, handler)
        self._done = threading.Event()
        self._writing = threading.Lock()
        self._failure: str | None = None
        self._refusal: str | None = None
        self._last_event_id: str | None = None
        self._followed = False
        self._reader_left = False

    def run(self) -> None:
        """Print events until Ctrl+C, the reader of stdout leaves, or the server refuses us."""
        try:
            self._connect()
            while not self._done.wait(0.5):
                pass
        except KeyboardInterrupt:
            click.echo("", err=True)  # end the line the terminal's ^C is on
        finally:
            self._done.set()
            self.client.disconnect()
        if self._reader_left:
            reader_left()
        if self._failure is not None:
            raise click.ClickException(self._failure)

    def _connect(self) -> None:
        try:
            self.client.connect(self.url, auth=self._auth, wait_timeout=10)
        except socketio.exceptions.ConnectionError as error:
            if self._refusal is not None:
                raise click.ClickException(f"The server refused: {self._refusal}") from None
            found = re.search(r"\[Errno -?\d+\] ([^\"')]+)", str(error))
            reason = f" ({found.group(1).strip()})" if found else ""
            raise click.ClickException(
                f"Cannot reach a server at {self.url}{reason}; start one, or name it with --url."
            ) from None

    def _stop(self, failure: str | None = None) -> None:
        self._failure = self._failure or failure
        self._done.set()

    def _auth(self) -> dict:
        with self.app.app_context():
            token, _ttl = issue_token(self.tenant_id)
        auth = {"token": token}
        if self._last_event_id is not None:
            auth["last_event_id"] = self._last_event_id
        return auth

    # --- Socket.IO handlers (each runs on a thread of the client's) -------------------------

    def _connected(self) -> None:
        self.client.emit("subscribe", {"types": sorted(self.types)}, callback=self._subscribed)

    def _subscribed(self, ack=None) -> None:
        if isinstance(ack, dict) and "error" in ack:
            self._stop(f"The server refused the type filter: {ack['error'].get('message')}")
            return
        if self._followed:
            click.echo("Reconnected.", err=True)
            return
        self._followed = True
        which = f" of type {', '.join(sorted(self.types))}" if self.types else ""
        click.echo(
            f"Following tenant {self.tenant_id}'s events{which} at {self.url}; Ctrl+C stops.",
            err=True,
        )

    def _refused(self, data=None) -> None:
        # A refusal is a dict with the server's reason; anything else is the network.
        if isinstance(data, dict):
            self._refusal = str(data.get("message"))
            if self._followed:  # refused on a reconnect: the credentials went bad meanwhile
                self._stop(f"The server refused: {self._refusal}")

    def _disconnected(self, reason=None) -> None:
        if not self._done.is_set():
            click.echo(f"Lost the connection to {self.url}; reconnecting…", err=True)

    def _revoked(self, data=None) -> None:
        message = data.get("message") if isinstance(data, dict) else data
        self._stop(f"The server closed the stream: {message}")

    def _replayed(self, data=None) -> None:
        if isinstance(data, dict) and data.get("truncated"):
            click.echo(
                "More events were stored while disconnected than the server replays "
                "(REPLAY_LIMIT): only the latest were printed; `events export` has them all.",
                err=True,
            )

    def _event(self, event) -> None:
        # python-socketio runs each message's handler on a new thread, started in arrival
        # order; the lock keeps lines whole (tests/e2e/test_cli_e2e.py checks the order).
        if not isinstance(event, dict):
            return
        with self._writing:
            if self._done.is_set():
                return
            self._last_event_id = event.get("id", self._last_event_id)
            # The server filters too, but a replay after a reconnect starts before the
            # filter is set again.
            if self.types and event.get("type") not in self.types:
                return
            try:
                self.out.write(ndjson_line(event))
                self.out.flush()
            except OSError:  # the reader of stdout went away (`| head`)
                self._reader_left = True
                self._stop()
