"""Fan-out: hand published events to every socket in a room, cheaply.

python-engineio sends every packet through a per-connection queue: ``Socket.send``
puts it there and wakes that connection's writer greenlet, which takes it out,
encodes it and frames it for the WebSocket. For an event going to 50 sockets that
is 50 queue hand-offs, 50 greenlet wake-ups and 50 encodings of the same text into
the same frame: ~20 µs a frame in profiles, a quarter of the server's CPU with 50
subscribers.

Under eventlet, a connection with nothing queued and nothing being written is
written to directly instead: each event's frame is built once, and each socket gets
one non-blocking ``send`` for all the events of a publish (a group commit's worth),
which the kernel takes whole as long as the client keeps up. A connection that
negotiated compression gets frames of its own, since its deflate context is its own.
Everything else takes the library's path, so the order of frames on a connection
never changes: a socket with a backlog, one still upgrading or on long polling, and
every socket in threading mode. Frames the kernel takes only part of are finished by
a greenlet that holds the connection's send lock until they are out; the writer
greenlet waits for that lock before it sends anything queued after them.
"""

from __future__ import annotations

import logging
import socket
import struct
from contextlib import suppress

from engineio import packet as eio_packet

log = logging.getLogger("ingest.fanout")

_WRITER_ATTRIBUTE = "_ingest_direct_writer"


def probe(eio) -> bool:
    """Whether the library internals the direct path reads are there and behave.

    Pinned: python-engineio 4.15.1 and eventlet 0.41.3. When upgrading either, re-check
    engineio's Server._async["websocket"] and its sockets' upgraded, upgrading, closed
    and queue, and eventlet's RFC6455WebSocket socket, extensions, websocket_closed,
    _sendlock and _pack_message (the frame it builds must equal text_frame's).
    """
    try:
        from engineio.socket import Socket
        from eventlet.websocket import RFC6455WebSocket

        if not callable(eio._async.get("websocket")):
            return False
        connection = Socket(eio, "probe")
        if (connection.upgraded, connection.upgrading, connection.closed) != (False,) * 3:
            return False
        if connection.queue.qsize() != 0:
            return False
        near, far = socket.socketpair()
        try:
            ws = RFC6455WebSocket(near, {}, extensions={})
            return (
                ws.socket is near
                and ws.websocket_closed is False
                and "permessage-deflate" not in ws.extensions
                and ws._sendlock.balance > 0
                and ws._pack_message("probe") == text_frame(b"probe")
            )
        finally:
            near.close()
            far.close()
    except Exception:
        log.exception("probing the direct fan-out path failed")
        return False


def install(sio_server, public_paths_only: bool = False) -> None:
    """Give each eventlet WebSocket connection a direct writer, if the probe allows.

    A no-op in threading mode. Otherwise logs which path delivery takes.
    """
    eio = sio_server.eio
    if eio.async_mode != "eventlet":
        return
    if public_paths_only or not probe(eio):
        log.warning(
            "fan-out: every frame through python-engineio's queue (%s)",
            "EVENTLET_PUBLIC_PATHS_ONLY"
            if public_paths_only
            else "its internals or eventlet's are not what ingest.fanout expects",
        )
        return
    log.info("fan-out: frames written directly to idle WebSockets")
    from eventlet import patcher
    from eventlet.websocket import RFC6455WebSocket

    # The classes the kernel sockets really have: monkey-patching rebinds socket.socket.
    plain, tls = patcher.original("socket").socket, patcher.original("ssl").SSLSocket
    base = eio._async["websocket"]

    class TrackedWebSocketWSGI(base):
        """engineio's eventlet WebSocket app, attaching a DirectWriter to the connection."""

        def __init__(self, handler, server):
            connection = handler.__self__  # the engineio Socket this handler serves

            def tracked(ws):
                writer = None
                if _writable_directly(ws, RFC6455WebSocket, plain, tls):
                    writer = DirectWriter(connection, ws)
                    setattr(connection, _WRITER_ATTRIBUTE, writer)
                try:
                    return handler(ws)
                finally:
                    if writer is not None:
                        setattr(connection, _WRITER_ATTRIBUTE, None)
                        log.debug(
                            "%s closed: %d frames written directly in %d sends, %d queued",
                            connection.sid,
                            writer.direct,
                            writer.sends,
                            writer.queued,
                        )

            super().__init__(tracked, server)

    # A copy: the driver's dict is shared by every server in the process.
    eio._async = {**eio._async, "websocket": TrackedWebSocketWSGI}


def _writable_directly(ws, rfc6455_class, plain_class, tls_class) -> bool:
    """An RFC 6455 WebSocket over a plain TCP socket (not TLS inside the process)."""
    raw = getattr(getattr(ws, "socket", None), "fd", None)
    return (
        isinstance(ws, rfc6455_class)
        and isinstance(raw, plain_class)
        and not isinstance(raw, tls_class)
    )


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final RFC 6455 text frame, as a server sends it."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class DirectWriter:
    """Writes frames straight to one eventlet WebSocket while nothing else is being sent."""

    __slots__ = ("compressed", "connection", "direct", "queued", "sends", "ws")  # one per socket

    def __init__(self, connection, ws):
        self.connection = connection
        self.ws = ws
        # Compressed frames depend on the connection's deflate context: built per socket.
        self.compressed = "permessage-deflate" in ws.extensions
        self.direct = 0  # frames written here
        self.sends = 0  # ... in this many writes
        self.queued = 0  # frames left to engineio's writer greenlet

    def _idle(self) -> bool:
        connection, ws = self.connection, self.ws
        return (
            connection.upgraded
            and not connection.upgrading
            and not connection.closed
            and not ws.websocket_closed
            and not connection.queue.qsize()
            # Nobody is sending on it (the writer greenlet, or an earlier frame's tail)
            # or waiting to: taking the lock now cannot overtake anything.
            and ws._sendlock.balance > 0
        )

    def write(self, fanouts: list[Fanout]) -> bool:
        """Send these events now, in one write, if the connection is idle.

        False, or an exception: nothing was sent, use engineio's queue.
        """
        if not self._idle():
            self.queued += len(fanouts)
            return False
        if not self.connection.check_ping_timeout():
            return True  # the client stopped answering pings; engineio closed the socket
        lock = self.ws._sendlock
        lock.acquire(blocking=False)
        try:
            if self.compressed:
                data = b"".join(self.ws._pack_message(fanout.text) for fanout in fanouts)
            else:
                data = b"".join(fanout.frame for fanout in fanouts)
            sent = self.ws.socket.fd.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            lock.release()  # broken: the writer greenlet notices and closes the connection
            self.queued += len(fanouts)
            return False
        except BaseException:
            lock.release()  # nothing was sent: the queue can take the events
            self.queued += len(fanouts)
            raise
        self.direct += len(fanouts)
        self.sends += 1
        if sent == len(data):
            lock.release()
        else:
            # The frames are built (and compressed ones have moved the deflate context
            # on), so they go out whole, behind this lock, before anything queued later.
            from eventlet import spawn_n  # a DirectWriter only exists under eventlet

            spawn_n(self._send_rest, data[sent:])
        return True

    def _send_rest(self, rest: bytes) -> None:
        try:
            self.ws.socket.sendall(rest)
        except OSError as error:
            # Half a frame is out: nothing more may follow it. Shutting the socket down
            # ends the connection's read loop, and engineio closes it.
            log.debug("%s closed mid-frame: %s", self.connection.sid, error)
            with suppress(OSError):
                self.ws.socket.shutdown(socket.SHUT_RDWR)
        finally:
            self.ws._sendlock.release()


class Fanout:
    """One event, encoded once as a Socket.IO packet, on its way to many sockets."""

    __slots__ = ("_frame", "packet", "text")

    def __init__(self, encoded_packet: str):
        self.packet = eio_packet.Packet(eio_packet.MESSAGE, encoded_packet)
        self.text = self.packet.encode()
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The uncompressed frame, the same for every socket: built at most once."""
        if self._frame is None:
            self._frame = text_frame(self.text.encode())
        return self._frame


def deliver(sio_server, eio_sid: str, fanouts: list[Fanout]) -> None:
    """Send one socket its events, in order: directly if it is idle, else queued."""
    connection = sio_server.eio.sockets.get(eio_sid)
    writer = getattr(connection, _WRITER_ATTRIBUTE, None)
    if writer is not None:
        try:
            if writer.write(fanouts):
                return
        except Exception:
            log.exception("writing to %s directly failed; queueing instead", eio_sid)
    # The libraries' own path (which also copes with a socket gone meanwhile): through
    # python-socketio's _send_eio_packet, which Flask-SocketIO's test client intercepts,
    # or python-engineio's public send_packet, which it calls, should it go away.
    send = getattr(sio_server, "_send_eio_packet", None) or sio_server.eio.send_packet
    for fanout in fanouts:
        send(eio_sid, fanout.packet)
