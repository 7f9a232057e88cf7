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

import eventlet
import eventlet.wsgi

# A body the application left unread is read and dropped, so that its keep-alive
# connection can carry the next request, only up to this size. A bigger one, or a
# chunked one (whose size only its sender knows), closes the connection instead:
# a client must not make the server read on for as long as it keeps sending.
DISCARD_LIMIT = 64 * 1024


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
        body = environ["eventlet.input"]
        has_body = body.chunked_input or body.content_length
        self.connection.settimeout(self.body_timeout if has_body else None)
        if body.chunked_input:
            # eventlet ends a chunked body itself, but does not say so: without this,
            # Werkzeug reads a body that has no Content-Length as empty.
            environ["wsgi.input_terminated"] = True
        # eventlet builds the body's reader in get_environ; only its discard changes.
        body.__class__ = _RequestBody
        return environ


def protocol(config) -> type[HttpProtocol]:
    """The protocol class for eventlet.wsgi.server, with the timeouts ``config`` sets."""
    return type(
        "ConfiguredHttpProtocol",
        (HttpProtocol,),
        {
            "header_timeout": config["REQUEST_HEADER_TIMEOUT_SECONDS"],
            "body_timeout": config["REQUEST_BODY_TIMEOUT_SECONDS"],
        },
    )
