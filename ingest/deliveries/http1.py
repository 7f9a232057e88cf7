"""One POST and its answer over a kept-alive HTTP/1.1 connection, reading only what is kept.

Why not urllib3 or h11: a webhook send is a request this module writes whole and an
answer of which only the status and the first 4 KiB matter. urllib3 (through
http.client and its email parser) cost 280-360 us of CPU per send here and h11
110-150 us of protocol work alone, against 60-90 us for this module, signing included
(make bench, docs/performance.md); delivery shares the machine with ingestion.

What it reads is bounded: a head of at most MAX_HEAD_BYTES, a body of which ``keep``
bytes are kept and at most DRAIN_BYTES more are read past them to keep the connection;
anything larger, or framed so that the end can't be known, closes the connection.
Framing follows RFC 9112 section 6.3; anything it can't read is a ProtocolError.
"""

from __future__ import annotations

import functools
import re
import socket
import time
from dataclasses import dataclass

MAX_HEAD_BYTES = 16 * 1024
# Past what is kept, how much more of a body is read (and dropped) to reuse the connection.
DRAIN_BYTES = 64 * 1024
# Interim (1xx) answers skipped before the final one, at most.
MAX_INTERIM = 4
READ_SIZE = 16 * 1024
# Chunks of a chunked body read, at most; and reads between turns for other green threads.
MAX_CHUNKS = 1024
YIELD_EVERY_READS = 8

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?:[ \t][^\r\n]*)?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What may not appear in a request head's names and values: it would split the head.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class ProtocolError(Exception):
    """The answer is not HTTP/1.1 this client can read; ``status`` if its head was read.

    A head that can't be read whole gives no status: only a complete head is an answer.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ClosedBeforeAnswer(ConnectionError):
    """The connection ended before a byte of the answer: the request may be sent again."""


@dataclass(frozen=True)
class Response:
    status: int
    kept: bytes
    reusable: bool


def request_head(target: str, host: str, headers: dict[str, str], body_length: int) -> bytes:
    """The head of a POST; ValueError if the target, a name or a value would break it."""
    for texts in (headers, headers.values()):
        if _UNSAFE.search("".join(texts)):
            raise ValueError(f"Not sendable in a request head: {headers!r}.")
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{_request_line(target, host)}{lines}Content-Length: {body_length}\r\n\r\n".encode(
        "ascii"
    )


@functools.lru_cache(maxsize=1024)
def _request_line(target: str, host: str) -> str:
    """The request line and Host field, checked once per receiver."""
    if _UNSAFE.search(target + host) or " " in target + host:
        raise ValueError(f"Not sendable in a request head: {target!r}, {host!r}.")
    return f"POST {target} HTTP/1.1\r\nHost: {host}\r\n"


class Connection:
    """One kept-alive connection and the bytes read from it but not yet used.

    The unread bytes are ``_buffer[_start:]``: taking some moves ``_start`` rather than
    copying the rest (a slice per line made an answer of many tiny chunks cost the
    square of its length: 0.3 s of CPU for 70,000 one-byte chunks).
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = bytearray()
        self._start = 0
        self._answered = False  # a byte of this request's answer has arrived
        self._reads = 0

    def close(self) -> None:
        self.sock.close()

    def idle_and_quiet(self) -> bool:
        """Whether a kept-alive connection can carry a request: nothing arrived since
        its last answer (an unasked-for answer would be read as the next one's) and the
        receiver has not closed it."""
        if self._unread() or getattr(self.sock, "pending", lambda: 0)():
            return False
        select = _select()
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        return not poller.poll(0)

    def post(self, head: bytes, body: bytes, keep: int) -> Response:
        """Send one request and read its answer: the status and the body's first ``keep`` bytes."""
        self._answered = False
        # What the last answer left is all read (or the connection was not kept): a new
        # answer starts a new buffer, so one never holds more than an answer's bounds.
        del self._buffer[: self._start]
        self._start = 0
        try:
            self.sock.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError) as error:
            raise ClosedBeforeAnswer(str(error)) from None
        for _ in range(MAX_INTERIM + 1):
            http_minor, status, fields = self._read_head()
            if status == 101:
                raise ProtocolError("The receiver switched protocols.", status)
            if status >= 200:
                return self._read_body(http_minor, status, fields, keep)
        raise ProtocolError(f"More than {MAX_INTERIM} interim answers.", status)

    # --- reading --------------------------------------------------------------------------

    def _unread(self) -> int:
        return len(self._buffer) - self._start

    def _fill(self) -> bool:
        """Read what has arrived (waiting for some); False once the receiver closed.

        Every few reads, other green threads get a turn: bytes that arrive as fast as
        they are read never make a read wait, which is where they would otherwise run.
        """
        self._reads += 1
        if self._reads % YIELD_EVERY_READS == 0:
            time.sleep(0)
        chunk = self.sock.recv(READ_SIZE)
        self._buffer += chunk
        return bool(chunk)

    def _take(self, count: int, status: int) -> bytes:
        while self._unread() < count:
            if not self._fill():
                raise ProtocolError("The connection closed inside the answer's body.", status)
        taken = bytes(self._buffer[self._start : self._start + count])
        self._start += count
        return taken

    def _line(self, status: int, limit: int = 1024) -> bytes:
        searched = self._start
        while (end := self._buffer.find(b"\n", searched)) < 0:
            if self._unread() > limit:
                raise ProtocolError("An overlong line in a chunked body.", status)
            searched = len(self._buffer)
            if not self._fill():
                raise ProtocolError("The connection closed inside the answer's body.", status)
        if end - self._start > limit:
            raise ProtocolError("An overlong line in a chunked body.", status)
        line = bytes(self._buffer[self._start : end])
        self._start = end + 1
        return line.rstrip(b"\r")

    # --- the head -----------------------------------------------------------------------

    def _read_head(self) -> tuple[int, int, dict[bytes, list[bytes]]]:
        searched = self._start
        while (end := _HEAD_END.search(self._buffer, searched)) is None:
            if self._unread() > MAX_HEAD_BYTES:
                raise ProtocolError(_head_too_large())
            # Only what arrived since, and the three bytes before it, can hold the end.
            searched = max(self._start, len(self._buffer) - 3)
            if not self._fill_head():
                if not self._answered:
                    raise ClosedBeforeAnswer("The connection closed before an answer.")
                raise ProtocolError("The connection closed inside the answer's head.")
            self._answered = True
        if end.start() - self._start > MAX_HEAD_BYTES:
            raise ProtocolError(_head_too_large())
        head = bytes(self._buffer[self._start : end.start()])
        self._start = end.end()
        lines = head.split(b"\n")
        status_line = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
        if status_line is None:
            raise ProtocolError(f"Not an HTTP/1.x status line: {_quoted(lines[0])}.")
        status = int(status_line[2])
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, colon, value = line.rstrip(b"\r").partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                raise ProtocolError(f"Malformed header line: {_quoted(line)}.")
            fields.setdefault(name.lower(), []).append(value.strip(b" \t"))
        return int(status_line[1]), status, fields

    def _fill_head(self) -> bool:
        try:
            return self._fill()
        except ConnectionResetError as error:
            if not self._answered:
                raise ClosedBeforeAnswer(str(error)) from None
            raise

    # --- the body -----------------------------------------------------------------------

    def _read_body(self, http_minor: int, status: int, fields: dict, keep: int) -> Response:
        reusable = http_minor == 1 and not _has_token(fields, b"connection", b"close")
        if status in (204, 304):
            return self._done(status, b"", reusable)
        codings = _tokens(fields, b"transfer-encoding")
        if codings:
            if codings[-1] != b"chunked":
                return Response(status, self._read_until_close(keep), reusable=False)
            # Both framings: the length is ignored, and the connection not trusted after.
            kept, whole = self._read_chunked(status, keep)
            return self._done(status, kept, reusable and whole and b"content-length" not in fields)
        length = _content_length(fields, status)
        if length is None:
            return Response(status, self._read_until_close(keep), reusable=False)
        kept = self._take(min(length, keep), status)
        rest = length - len(kept)
        if rest > DRAIN_BYTES:
            return Response(status, kept, reusable=False)
        self._take(rest, status)
        return self._done(status, kept, reusable)

    def _done(self, status: int, kept: bytes, reusable: bool) -> Response:
        # Bytes after the answer were never asked for: the connection is out of step.
        return Response(status, kept, reusable and not self._unread())

    def _read_chunked(self, status: int, keep: int) -> tuple[bytes, bool]:
        """The first ``keep`` bytes of a chunked body, and whether it was read to its end.

        At most ``keep`` + DRAIN_BYTES bytes are read, framing included, in at most
        MAX_CHUNKS chunks: past either, the rest is left and the connection closed.
        """
        kept, budget = bytearray(), keep + DRAIN_BYTES
        for _ in range(MAX_CHUNKS):
            before = self._start
            size_text = self._line(status).split(b";", 1)[0].strip(b" \t")
            if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
                raise ProtocolError("Malformed chunk size in the answer's body.", status)
            size = int(size_text, 16)
            if size == 0:
                return self._read_trailers(status, bytes(kept))
            budget -= self._start - before + size + 2
            if budget < 0:
                # Over the budget: what is still wanted of this chunk, and no more.
                kept += self._take(min(size, keep - len(kept)), status)
                return bytes(kept), False
            data = self._take(size, status)
            kept += data[: keep - len(kept)]
            if self._line(status):
                raise ProtocolError("A chunk longer than its size in the answer's body.", status)
        return bytes(kept), False

    def _read_trailers(self, status: int, kept: bytes) -> tuple[bytes, bool]:
        for _ in range(64):  # trailer fields, up to the empty line
            if not self._line(status, MAX_HEAD_BYTES):
                return kept, True
        raise ProtocolError("Too many trailer fields in the answer.", status)

    def _read_until_close(self, keep: int) -> bytes:
        while self._unread() < keep and self._fill():
            pass
        return bytes(self._buffer[self._start : self._start + keep])


def _select():
    """The select module itself: eventlet's green one has no poll(), and a look at whether
    a socket is readable now must not wait for the hub."""
    import select

    if hasattr(select, "poll"):
        return select
    from eventlet import patcher

    return patcher.original("select")


def _tokens(fields: dict, name: bytes) -> list[bytes]:
    return [
        t.strip(b" \t").lower() for v in fields.get(name, ()) for t in v.split(b",") if t.strip()
    ]


def _has_token(fields: dict, name: bytes, token: bytes) -> bool:
    return token in _tokens(fields, name)


def _content_length(fields: dict, status: int) -> int | None:
    values = {
        v.strip(b" \t") for value in fields.get(b"content-length", ()) for v in value.split(b",")
    }
    if not values:
        return None
    if len(values) > 1 or not all(v.isdigit() and len(v) <= 18 for v in values):
        raise ProtocolError("An invalid Content-Length in the answer.", status)
    return int(values.pop())


def _head_too_large() -> str:
    return f"The answer's head is longer than {MAX_HEAD_BYTES // 1024} KiB."


def _quoted(line: bytes) -> str:
    return repr(line[:80].decode("latin-1"))
