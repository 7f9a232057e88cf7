"""Real HTTP receivers on 127.0.0.1 for webhook tests: they record every request and
answer what a test tells them to."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    # The sender's end of the connection: which process sent it (e2e tests read /proc).
    client_port: int = 0

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Senders open up to WEBHOOK_CONCURRENCY connections at once: with socketserver's
    # backlog of 5, the SYNs of the others were dropped and their requests came 1 s late.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A sender that stops, or is killed, resets its kept-alive connections: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Receiver:
    """``answers``: statuses to give, in turn, before ``status`` for every request after."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status = status
        self.delay = delay
        self.answers: deque[int] = deque()
        self.requests: list[Received] = []
        self.in_flight = 0  # arrived, not yet answered
        self.extra_headers: dict[str, str] = {}
        self.reply = b"received"
        # Cleared: requests wait here (a receiver that hangs) until it is set again.
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (a killed server): nothing arrived.
                    self.close_connection = True
                    return
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                            self.client_address[1],
                        )
                    )
                    status = receiver.answers.popleft() if receiver.answers else receiver.status
                    receiver.in_flight += 1
                try:
                    self._answer(status)
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def _answer(self, status: int) -> None:
                receiver.gate.wait(30)
                if receiver.delay:
                    time.sleep(receiver.delay)
                reply = receiver.reply
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        with self._lock:
            return [request.webhook_id for request in self.requests]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.requests)} of {count} requests arrived in {timeout} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
