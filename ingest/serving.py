"""The eventlet HTTP server's connections: buffer sizes, timeouts, chunked request bodies.

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

    def get_environ(self):
        environ = super().get_environ()
        body = environ["eventlet.input"]
        if body.chunked_input:
            # eventlet ends a chunked body itself, but does not say so: without this,
            # Werkzeug reads a body that has no Content-Length as empty.
            environ["wsgi.input_terminated"] = True
        # eventlet builds the body's reader in get_environ; only its discard changes.
        body.__class__ = _RequestBody
        return environ


def protocol() -> type[HttpProtocol]:
    """The protocol class for eventlet.wsgi.server."""
    return HttpProtocol
