"""Sending one signed POST to a receiver: pinned to a checked address, keep-alive, bounded.

Connections are kept alive per receiver (host, port and the address it resolved to),
at most WEBHOOK_CONCURRENCY each. The name is resolved here, each address is checked
(addresses.py), and the connection goes to that very address, with the name in the
Host header and, for https, in SNI and the certificate check: a name that resolves
to a private address between the check and the connect (DNS rebinding) reaches nothing.
Redirects are not followed; of the response, the status and the first 4 KiB are kept
(http1.py reads it, within bounds).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..extensions import green_process
from .addresses import NOT_PUBLIC, AddressRefused, check_url, is_public, resolve
from .http1 import ClosedBeforeAnswer, Connection, ProtocolError, request_head

RESPONSE_KEPT_BYTES = 4096
# How long a resolved address is used before the name is resolved again.
RESOLVED_FOR_SECONDS = 30.0
# Receivers whose connections are kept; the least recently used beyond are closed.
MAX_POOLS = 256

log = logging.getLogger("ingest.webhooks")


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code, or an error saying why there was none."""

    status_code: int | None = None
    error: str | None = None
    response: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    def __init__(
        self,
        timeout: float,
        concurrency: int,
        allow_private: bool,
        user_agent: str,
        tls: ssl.SSLContext | None = None,
    ):
        self.timeout = timeout
        self.concurrency = concurrency
        self.allow_private = allow_private
        self.user_agent = user_agent
        # Certificates and host names checked against the system's trusted authorities.
        self.tls = tls or ssl.create_default_context()
        self._lock = threading.Lock()
        # Idle connections by receiver: (scheme, host, port, address).
        self._idle: OrderedDict[tuple, deque[Connection]] = OrderedDict()
        self._resolved: dict[tuple[str, int], tuple[float, str]] = {}

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        try:
            with _deadline(self.timeout):
                return self._post(url, headers, body)
        except _TooSlow:
            return Outcome(error=f"No answer within {self.timeout:g} s.")

    def _post(self, url: str, headers: dict[str, str], body: bytes) -> Outcome:
        started = time.monotonic()
        try:
            scheme, host, port, target, netloc = _route(url)
            receiver = (scheme, host, port, self._address(host, port))
            head = request_head(
                target, netloc, {**headers, "User-Agent": self.user_agent}, len(body)
            )
        except (AddressRefused, ValueError) as refused:
            return Outcome(error=str(refused))
        try:
            status, kept = self._exchange(receiver, head, body)
        except ProtocolError as error:
            return Outcome(status_code=error.status, error=str(error))
        except OSError as error:
            return Outcome(error=_describe(error))
        text = printable(kept.decode("utf-8", errors="replace"))
        if time.monotonic() - started > self.timeout:
            return Outcome(status, f"No answer within {self.timeout:g} s.", text)
        return Outcome(status_code=status, response=text)

    def _exchange(self, receiver: tuple, head: bytes, body: bytes) -> tuple[int, bytes]:
        """The answer's status and kept bytes, on a kept-alive connection if there is one.

        A kept-alive connection the receiver closed meanwhile ends before a byte of the
        answer: the request is then sent once more, on a new connection.
        """
        while True:
            connection = self._take_idle(receiver)
            reused = connection is not None
            if connection is None:
                connection = self._connect(receiver)
            kept_alive = False
            try:
                response = connection.post(head, body, RESPONSE_KEPT_BYTES)
                kept_alive = response.reusable
            except ClosedBeforeAnswer:
                if reused:
                    continue
                raise
            finally:
                # An error, a deadline or an answer that ends the connection: closed.
                if kept_alive:
                    self._give_back(receiver, connection)
                else:
                    connection.close()
            return response.status, response.kept

    def _connect(self, receiver: tuple) -> Connection:
        scheme, host, port, address = receiver
        sock = socket.create_connection((address, port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self.tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return Connection(sock)

    def _take_idle(self, receiver: tuple) -> Connection | None:
        """A kept-alive connection to the receiver, if one is idle and quiet.

        One on which bytes arrived while it was idle (an answer nobody asked for) or
        that the receiver closed is dropped: the bytes would be read as the next
        request's answer (a 500 read as a stray 200 before it).
        """
        while True:
            with self._lock:
                idle = self._idle.get(receiver)
                if not idle:
                    return None
                self._idle.move_to_end(receiver)
                connection = idle.pop()
            if connection.idle_and_quiet():
                return connection
            connection.close()

    def _give_back(self, receiver: tuple, connection: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(receiver, deque())
            self._idle.move_to_end(receiver)
            idle.append(connection)
            closing = [idle.popleft() for _ in range(len(idle) - self.concurrency)]
            while len(self._idle) > MAX_POOLS:
                closing.extend(self._idle.popitem(last=False)[1])
        for extra in closing:
            extra.close()

    def _address(self, host: str, port: int) -> str:
        """An address of the host that may be sent to, resolved at most RESOLVED_FOR_SECONDS ago."""
        now = time.monotonic()
        cached = self._resolved.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise AddressRefused(f"{host} does not resolve: {error}.") from None
        allowed = [a for a in addresses if self.allow_private or is_public(a)]
        if not allowed:
            raise AddressRefused(NOT_PUBLIC.format(host=host))
        self._resolved[(host, port)] = (now + RESOLVED_FOR_SECONDS, str(allowed[0]))
        return str(allowed[0])

    def close(self) -> None:
        with self._lock:
            idle = [connection for pool in self._idle.values() for connection in pool]
            self._idle.clear()
        for connection in idle:
            connection.close()


class _TooSlow(Exception):
    pass


def _deadline(seconds: float):
    """The whole attempt's deadline, connect to last byte kept, where it can be enforced.

    Under eventlet a timer interrupts the attempt; with threads there is none, and each
    connect and read is bounded by the timeout instead (a receiver dripping its answer
    holds only its own endpoint's sender that much longer).
    """
    if not green_process():
        return contextlib.nullcontext()
    import eventlet

    return eventlet.Timeout(seconds, _TooSlow)


@functools.lru_cache(maxsize=1024)
def _route(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, request target, Host field) of a URL that may receive webhooks."""
    scheme, host, port = check_url(url)
    parts = urlsplit(url)
    return (
        scheme,
        host,
        port,
        (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        parts.netloc,
    )


def printable(text: str) -> str:
    """Text a receiver sent, fit to store: PostgreSQL refuses NUL in text columns."""
    return text.replace("\x00", "\ufffd")


def _describe(error: BaseException) -> str:
    return printable(f"{type(error).__name__}: {error}")[:300]
