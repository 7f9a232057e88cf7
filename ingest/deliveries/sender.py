"""Sending one signed POST to a receiver: pinned to a checked address, keep-alive, bounded.

Connections are kept alive per receiver (host, port and the address it resolved to),
at most WEBHOOK_CONCURRENCY each. The name is resolved here, each address is checked
(addresses.py), and the connection goes to that very address, with the name in the
Host header and, for https, in SNI and the certificate check: a name that resolves
to a private address between the check and the connect (DNS rebinding) reaches nothing.
Redirects are not followed; of the response, the status and the first 4 KiB are kept.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from ..extensions import green_process
from .addresses import NOT_PUBLIC, AddressRefused, check_url, is_public, resolve

RESPONSE_KEPT_BYTES = 4096
# How long a resolved address is used before the name is resolved again.
RESOLVED_FOR_SECONDS = 30.0
# Receivers whose connections are kept; the least recently used beyond are closed.
MAX_POOLS = 256


# Of a response's head: lines, and characters a line (Python's own: 100 and 65,536).
MAX_HEADER_LINES = 64
MAX_HEADER_LINE = 8192

log = logging.getLogger("ingest.webhooks")


def bound_response_headers() -> bool:
    """Bound the head of every response http.client reads, so a receiver's can't be 6 MB.

    The body is read 4 KiB at most, but http.client reads a response's status line and
    headers whole, up to 100 lines of 64 KiB each: twenty endpoints answering that way
    took a server from 100 to 900 MB. The bounds are http.client's module constants, the
    only place it has them; they are checked before use, and without them the defaults
    stay (a warning says so; a worker's start says which). True if bounded.
    """
    lines, line = getattr(http.client, "_MAXHEADERS", None), getattr(http.client, "_MAXLINE", None)
    if not (isinstance(lines, int) and isinstance(line, int)):
        log.warning("webhook responses: header size not bounded (http.client has no limits)")
        return False
    http.client._MAXHEADERS = min(lines, MAX_HEADER_LINES)
    http.client._MAXLINE = min(line, MAX_HEADER_LINE)
    return True


# A receiver chooses what urllib3 warns about (malformed headers, with a traceback each):
# its own errors are recorded on the delivery, not written to the server's log.
logging.getLogger("urllib3").setLevel(logging.ERROR)


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
    def __init__(self, timeout: float, concurrency: int, allow_private: bool, user_agent: str):
        self.timeout = timeout
        self.concurrency = concurrency
        self.allow_private = allow_private
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
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
            scheme, host, port = check_url(url)
            pool = self._pool(scheme, host, port, self._address(host, port))
            response = pool.urlopen(
                "POST",
                _target(url),
                body=body,
                headers={**headers, "Host": urlsplit(url).netloc, "User-Agent": self.user_agent},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
                release_conn=False,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            )
        except AddressRefused as refused:
            return Outcome(error=str(refused))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return Outcome(error=_describe(error))
        return self._read(response, started)

    def _read(self, response, started: float) -> Outcome:
        whole = False
        try:
            kept = response.read(RESPONSE_KEPT_BYTES, decode_content=False)
            whole = response.read(1, decode_content=False) == b""
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return Outcome(status_code=response.status, error=_describe(error))
        finally:
            if not whole:
                # The rest is not read: the connection cannot carry another request.
                response.close()
            response.release_conn()
        text = printable(kept.decode("utf-8", errors="replace"))
        if time.monotonic() - started > self.timeout:
            return Outcome(response.status, f"No answer within {self.timeout:g} s.", text)
        return Outcome(status_code=response.status, response=text)

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

    def _pool(self, scheme: str, host: str, port: int, address: str) -> urllib3.HTTPConnectionPool:
        key = (scheme, host, port, address)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            options = {"port": port, "maxsize": self.concurrency, "block": False}
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address,
                    server_hostname=host,
                    assert_hostname=host,
                    cert_reqs="CERT_REQUIRED",
                    **options,
                )
            else:
                pool = urllib3.HTTPConnectionPool(address, **options)
            self._pools[key] = pool
            while len(self._pools) > MAX_POOLS:
                self._pools.popitem(last=False)[1].close()
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


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


def printable(text: str) -> str:
    """Text a receiver sent, fit to store: PostgreSQL refuses NUL in text columns."""
    return text.replace("\x00", "\ufffd")


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return printable(f"{type(error).__name__}: {reason}")[:300]
