"""The webhook sender's HTTP/1.1 exchange (ingest/deliveries/http1.py, sender.py) against
real sockets on 127.0.0.1 answering byte for byte what each test scripts: framings,
interim answers, malformed and oversized answers, kept-alive connections the receiver
closed, and TLS with the name checked while the connection goes to the pinned address."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from ingest.deliveries.http1 import (
    DRAIN_BYTES,
    MAX_CHUNKS,
    MAX_HEAD_BYTES,
    ClosedBeforeAnswer,
    Connection,
    ProtocolError,
    request_head,
)
from ingest.deliveries.sender import Sender
from tests.green import run_green

BODY = b'{"type": "t"}'


class ScriptedReceiver:
    """Answers each request it reads with the next of ``answers``, as raw bytes.

    After an answer it closes the connection if ``close_after`` says so. ``requests``
    counts the requests read whole; ``connections`` the connections accepted.
    """

    def __init__(self, answers: list[bytes], close_after: bool = False, tls=None):
        self.answers = list(answers)
        self.close_after = close_after
        self.requests = 0
        self.connections = 0
        self.tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(sock,), daemon=True).start()

    def _answer(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            pending = b""
            while self.answers:
                while b"\r\n\r\n" not in pending:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(pending) < length:
                    pending += sock.recv(65536)
                pending = pending[length:]
                self.requests += 1
                sock.sendall(self.answers.pop(0))
                if self.close_after:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def scripted():
    made: list[ScriptedReceiver] = []

    def make(*answers: bytes, **options) -> ScriptedReceiver:
        made.append(ScriptedReceiver(list(answers), **options))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def exchange(receiver: ScriptedReceiver, keep: int = 4096):
    """One request on a new connection: the Response, and the connection for more."""
    connection = Connection(socket.create_connection(("127.0.0.1", receiver.port), timeout=5))
    head = request_head("/hook", f"127.0.0.1:{receiver.port}", {"webhook-id": "e1"}, len(BODY))
    return connection.post(head, BODY, keep), connection


def sender(**options) -> Sender:
    return Sender(timeout=5, concurrency=2, allow_private=True, user_agent="test", **options)


# --- framing ------------------------------------------------------------------------------------


def test_a_body_of_known_length_is_kept_and_the_connection_reused(scripted):
    receiver = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"HTTP/1.1 201 \r\n\r\n")
    response, connection = exchange(receiver)
    assert (response.status, response.kept, response.reusable) == (200, b"ok", True)
    # No length, no chunks: the body runs to the close, and nothing follows it.
    again = connection.post(request_head("/", "h", {}, 0), b"", 4096)
    assert (again.status, again.reusable) == (201, False)
    assert receiver.connections == 1


def test_a_chunked_body_is_read_to_its_end_trailers_included(scripted):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    response, _ = exchange(scripted(chunked))
    assert (response.status, response.kept, response.reusable) == (200, b"abcdefg", True)


def test_a_body_larger_than_what_is_kept_and_drained_ends_the_connection(scripted):
    large = b"x" * 200_000
    receiver = scripted(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(large), large),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n30d40\r\n"
        + large
        + b"\r\n0\r\n\r\n",
    )
    response, _ = exchange(receiver)
    assert (response.status, response.kept, response.reusable) == (200, b"x" * 4096, False)
    response, _ = exchange(receiver)
    assert (response.status, response.kept, response.reusable) == (200, b"x" * 4096, False)


def test_a_small_excess_is_drained_to_keep_the_connection(scripted):
    body = b"y" * 10_000
    response, _ = exchange(scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + body))
    assert (response.kept, response.reusable) == (body[:4096], True)


def test_interim_answers_are_skipped(scripted):
    response, _ = exchange(
        scripted(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n"
        )
    )
    assert (response.status, response.kept, response.reusable) == (204, b"", True)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        # Both framings: the length is ignored, and the connection not trusted after.
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        # More than was answered: the connection is out of step.
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_answers_after_which_the_connection_is_not_reused(scripted, answer):
    response, _ = exchange(scripted(answer))
    assert (response.status, response.reusable) == (200, False)


def test_bare_line_feeds_are_read_as_line_ends(scripted):
    response, _ = exchange(scripted(b"HTTP/1.1 202 Accepted\nContent-Length: 3\n\nyes"))
    assert (response.status, response.kept, response.reusable) == (202, b"yes", True)


# --- answers that can't be read -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "message", "status"),
    [
        (b"SMTP ready\r\n\r\n", "Not an HTTP/1.x status line", None),
        (b"HTTP/2 200\r\n\r\n", "Not an HTTP/1.x status line", None),
        (b"HTTP/1.1 20 OK\r\n\r\n", "Not an HTTP/1.x status line", None),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "Malformed header line", None),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "Malformed header line", None),
        (
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
            "longer than 16 KiB",
            None,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "invalid Content-Length", 200),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length", 200),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "closed inside the answer's body",
            200,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "Malformed chunk size",
            200,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            "longer than its size",
            200,
        ),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols", 101),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 5 + b"HTTP/1.1 200 OK\r\n\r\n", "interim answers", 100),
        (b"HTTP/1.1 200 OK\r\nContent-", "closed inside the answer's head", None),
    ],
)
def test_answers_that_cannot_be_read_say_why(scripted, answer, message, status):
    receiver = scripted(answer, close_after=True)
    with pytest.raises(ProtocolError, match=message) as raised:
        exchange(receiver)
    assert raised.value.status == status


def test_a_connection_closed_without_an_answer_says_so(scripted):
    receiver = scripted(b"", close_after=True)
    with pytest.raises(ClosedBeforeAnswer):
        exchange(receiver)


def test_a_huge_head_is_not_read_past_its_bound(scripted):
    """Megabytes of headers: reading stops just past 16 KiB (tracked by what was sent)."""
    receiver = scripted(b"HTTP/1.1 200 OK\r\n" + b"X-Fat: " + b"f" * 5_000_000, close_after=True)
    connection = Connection(socket.create_connection(("127.0.0.1", receiver.port), timeout=5))
    with pytest.raises(ProtocolError, match="longer than 16 KiB"):
        connection.post(request_head("/", "h", {}, 0), b"", 4096)
    assert len(connection._buffer) < MAX_HEAD_BYTES + 64 * 1024


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "nul\x00", "tab\tis\x7f"])
def test_a_value_that_would_split_the_head_is_refused(value):
    with pytest.raises(ValueError, match="Not sendable"):
        request_head("/", "h", {"webhook-id": value}, 0)
    with pytest.raises(ValueError, match="Not sendable"):
        request_head(f"/{value}", "h", {}, 0)


# --- the sender -------------------------------------------------------------------------------


def test_a_kept_alive_connection_the_receiver_closed_is_replaced_without_losing_the_send(scripted):
    """The receiver closes each connection after answering, as an idle timeout would
    between two sends: the second send finds it closed and goes again, on a new one."""
    receiver = scripted(*[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"] * 2, close_after=True)
    webhooks = sender()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    assert webhooks.post(url, {"webhook-id": "e1"}, BODY).succeeded
    assert webhooks.post(url, {"webhook-id": "e2"}, BODY).succeeded
    assert (receiver.requests, receiver.connections) == (2, 2)


def test_an_unreadable_answer_is_a_failure_with_its_reason(scripted):
    receiver = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", close_after=True)
    outcome = sender().post(f"http://127.0.0.1:{receiver.port}/", {}, BODY)
    assert not outcome.succeeded
    assert outcome.status_code == 200 and "invalid Content-Length" in outcome.error


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for "localhost" (and its key), made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_goes_to_the_checked_address_with_the_name_verified(scripted, certificate):
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    receiver = scripted(*[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"] * 2, tls=server_side)
    trusting = ssl.create_default_context(cafile=str(cert))

    outcome = sender(tls=trusting).post(f"https://localhost:{receiver.port}/h", {}, BODY)
    assert outcome.succeeded and outcome.response == "ok"

    # The same certificate reached by another name: the name is what is verified.
    outcome = sender(tls=trusting).post(f"https://127.0.0.1:{receiver.port}/h", {}, BODY)
    assert not outcome.succeeded and "certificate" in outcome.error.lower()
    # And by default only the system's authorities are trusted.
    outcome = sender().post(f"https://localhost:{receiver.port}/h", {}, BODY)
    assert not outcome.succeeded and "certificate verify failed" in outcome.error


# --- hostile answers that cost the sender, not the receiver ------------------------------------


def test_a_body_of_endless_tiny_chunks_is_read_only_so_far(scripted):
    """70,000 one-byte chunks: read up to MAX_CHUNKS, the connection then closed."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 70_000
    response, _ = exchange(scripted(chunked + b"0\r\n\r\n"))
    assert (response.status, response.kept, response.reusable) == (200, b"a" * MAX_CHUNKS, False)


def test_chunk_framing_counts_against_what_is_read(scripted):
    """Chunk extensions are framing, not data: they use up the budget all the same."""
    extension = b";x=" + b"e" * 1000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += (b"1" + extension + b"\r\na\r\n") * 1000 + b"0\r\n\r\n"
    response, _ = exchange(scripted(chunked))
    # About 70 chunks of 1,009 bytes fill the budget (4 KiB + DRAIN_BYTES), where
    # counting data alone would have read all 1,000.
    assert response.reusable is False
    assert len(response.kept) <= (4096 + DRAIN_BYTES) // 1000 + 1


def test_an_answer_nobody_asked_for_is_not_taken_for_the_next_one():
    """The receiver answers, then sends another answer unasked, then fails the next
    request: that failure is what the next send records, not the stray 200."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        sock, _ = listener.accept()
        with sock:
            sock.recv(65536)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            time.sleep(0.05)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # unasked
            with contextlib.suppress(OSError):  # the next request, if it comes this way
                sock.recv(65536)
        second, _ = listener.accept()
        with second:
            second.recv(65536)
            second.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    webhooks = sender()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    try:
        assert webhooks.post(url, {}, BODY).status_code == 200
        time.sleep(0.3)
        assert webhooks.post(url, {}, BODY).status_code == 500
    finally:
        listener.close()


GREEN_SCRIPT = """
import socket, sys
from ingest.deliveries.http1 import Connection, request_head

ticker = start_ticking()
eventlet.sleep(0.05)
connection = Connection(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
started = time.process_time()
connection.post(request_head("/", "h", {}, 0), b"", 4096)
cpu = time.process_time() - started
print(f"cpu {cpu:.3f} gap {longest_pause():.3f}")
"""


def test_a_hostile_answer_neither_burns_cpu_nor_holds_up_other_green_threads(scripted):
    """Under eventlet (the worker's mode), 70,000 one-byte chunks arriving as fast as
    they are read: reading them cost 0.3 s of CPU in one go, never yielding, so every
    other tenant's sends waited (the loopback attack: their p50 went to 4-7 s)."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 70_000
    receiver = scripted(chunked + b"0\r\n\r\n", close_after=True)
    _, cpu, _, gap = run_green(GREEN_SCRIPT, str(receiver.port)).split()
    assert float(cpu) < 0.1
    assert float(gap) < 0.1
