"""The eventlet HTTP server's connections: buffer sizes, timeouts, chunked request bodies.

Timeouts: a connection has REQUEST_HEADER_TIMEOUT_SECONDS to send a request's line and
headers, counted from when it opens or its previous response went out (so an idle
keep-alive connection closes after as long). A body then has no deadline as a whole,
so a slow upload of a big one goes on for as long as it keeps moving, but each read of
it may wait at most REQUEST_BODY_TIMEOUT_SECONDS. Once its request has been read, a
connection has no timeout of its own: Socket.IO long-polling and WebSocket connections
live as long as Engine.IO's pings say they should.

eventlet.wsgi.server's own ``keepalive=<seconds>`` would only bound each wait for the
request line (a client sending one byte at a time never trips it), and its
``socket_timeout`` every socket operation of the connection, WebSockets included.

wsgi.py imports this only when it serves under eventlet.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from contextlib import suppress

import eventlet
import eventlet.wsgi

log = logging.getLogger("ingest.serving")

# A body the application left unread is read and dropped, so that its keep-alive
# connection can carry the next request, only up to this size. A bigger one, or a
# chunked one (whose size only its sender knows), closes the connection instead:
# a client must not make the server read on for as long as it keeps sending.
DISCARD_LIMIT = 64 * 1024


def probe() -> bool:
    """Whether eventlet's request body still behaves as _RequestBody relies on.

    _RequestBody reads eventlet.wsgi.Input's own attributes (not a public API), checked
    here with two tiny bodies: pinned at eventlet 0.41.3; re-check chunked_input,
    chunk_length, content_length and position when upgrading. Without them, unread
    bodies are discarded eventlet's own way (read to the end).
    """
    try:
        plain = eventlet.wsgi.Input(io.BytesIO(b"abcd"), 4, None)
        plain.read(1)
        chunked = eventlet.wsgi.Input(
            io.BytesIO(b"2\r\nab\r\n0\r\n\r\n"), None, None, chunked_input=True
        )
        before = chunked.chunk_length
        read = chunked.read()
        return (
            (plain.chunked_input, plain.content_length, plain.position) == (False, 4, 1)
            and (chunked.chunked_input, before, read, chunked.chunk_length) == (True, -1, b"ab", 0)
            and callable(getattr(eventlet.wsgi.Input, "discard", None))
        )
    except Exception:
        return False


class _RequestBody(eventlet.wsgi.Input):
    """eventlet's request body with a bounded discard (DISCARD_LIMIT)."""

    def discard(self, buffer_size: int = 16 << 10) -> None:
        if self.chunked_input:
            unread = self.chunk_length != 0  # 0 once the last chunk has been read
        else:
            unread = self.content_length - self.position > DISCARD_LIMIT
        if unread:
            # eventlet closes the connection on an OSError here.
            raise ConnectionAbortedError("request body left unread; closing the connection")
        super().discard(buffer_size)


class AddressSlots:
    """Connections open per client address, up to ``most`` each (0: no limit).

    One address must not take every connection the server has: with all of them
    held open, no other client gets in.
    """

    def __init__(self, most: int):
        self.most = most
        self.open: Counter[str] = Counter()

    def take(self, address: str) -> bool:
        if self.most and self.open[address] >= self.most:
            return False
        self.open[address] += 1
        return True

    def give_back(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


# The error envelope, written here because this answer comes before any request is read
# (no Flask app or request runs for it, so errors.error_response cannot).
_TOO_MANY_CONNECTIONS = json.dumps(
    {
        "error": {
            "code": "too_many_connections",
            "message": "Too many connections open from this address; close some first.",
        }
    }
).encode()
_REFUSAL = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_TOO_MANY_CONNECTIONS), _TOO_MANY_CONNECTIONS)
)


class HttpProtocol(eventlet.wsgi.HttpProtocol):
    """One client connection: the requests it sends, one after another.

    Small buffers: eventlet gives every connection an 8 KiB read and a 16 KiB write
    buffer for as long as it is open, and a Socket.IO connection stays open for hours
    after its one HTTP request. 2 KiB each took idle connections from ~49 to ~38 KiB
    of RSS in `make bench` without changing throughput: bodies and responses larger
    than a buffer bypass it.
    """

    rbufsize = wbufsize = 2048
    header_timeout: float = 15.0
    body_timeout: float = 60.0
    bounded_discard: bool = True  # False: eventlet's own discard (probe() failed, or forced)
    address_slots: AddressSlots = AddressSlots(0)

    def handle(self):
        address = str(self.client_address[0]) if self.client_address else ""
        if not self.address_slots.take(address):
            with suppress(OSError):
                self.request.sendall(_REFUSAL)
            self.close_connection = 1
            return
        try:
            super().handle()
        finally:
            self.address_slots.give_back(address)

    def handle_one_request(self):
        self._head_deadline = deadline = eventlet.Timeout(self.header_timeout)
        try:
            super().handle_one_request()
        except eventlet.Timeout as error:
            if error is not deadline:
                raise
            self.close_connection = 1
        finally:
            deadline.cancel()

    def get_environ(self):
        # Called once the request line and headers are in, before the application runs.
        self._head_deadline.cancel()
        environ = super().get_environ()
        # From the request's own headers (public WSGI keys), whichever path runs.
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        has_body = chunked or environ.get("CONTENT_LENGTH", "0") not in ("", "0")
        self.connection.settimeout(self.body_timeout if has_body else None)
        if chunked:
            # eventlet ends a chunked body itself, but does not say so: without this,
            # Werkzeug reads a body that has no Content-Length as empty.
            environ["wsgi.input_terminated"] = True
        if self.bounded_discard:
            # eventlet builds the body's reader in get_environ; only its discard changes.
            environ["eventlet.input"].__class__ = _RequestBody
        return environ


def protocol(config) -> type[HttpProtocol]:
    """The protocol class for eventlet.wsgi.server, with the timeouts ``config`` sets."""
    bounded = not config["EVENTLET_PUBLIC_PATHS_ONLY"] and probe()
    if bounded:
        log.info("unread request bodies: discarded up to %d bytes, else closed", DISCARD_LIMIT)
    else:
        log.warning(
            "unread request bodies: read to the end, eventlet's own way (%s)",
            "EVENTLET_PUBLIC_PATHS_ONLY"
            if config["EVENTLET_PUBLIC_PATHS_ONLY"]
            else "eventlet's request body is not what ingest.serving expects",
        )
    return type(
        "ConfiguredHttpProtocol",
        (HttpProtocol,),
        {
            "header_timeout": config["REQUEST_HEADER_TIMEOUT_SECONDS"],
            "body_timeout": config["REQUEST_BODY_TIMEOUT_SECONDS"],
            "bounded_discard": bounded,
            "address_slots": AddressSlots(config["MAX_CONNECTIONS_PER_ADDRESS"]),
        },
    )


def raise_file_limit(connections: int) -> None:
    """Let the process hold ``connections`` sockets (each is a file descriptor).

    A container's default soft limit is often 1024; the hard limit is usually far
    higher, and any process may raise its soft limit up to it.
    """
    import resource

    wanted = connections + 256  # the database pool, Redis, logs, the listener
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    if soft < wanted:
        log.warning(
            "open files limited to %d: fewer than MAX_CONNECTIONS=%d need", soft, connections
        )
