"""The direct fan-out path (ingest/fanout.py) on a real eventlet server, seen from clients.

Two promises are visible on the wire. An event is written to each idle subscriber's
socket during its commit, before its request is answered (ingest/services/ingestion.py,
``_publish``), so its frame is already on the subscriber's socket when the 201 comes;
engineio's queue would send it only after. And the events of one publish go to a socket
in one write, so a subscriber waiting on its socket wakes up to all of them at once.
A subscriber that stops reading gets everything in order once it reads again, while
ingestion goes on meanwhile.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import socket
import sys
import termios
import threading
import time
import zlib
from pathlib import Path

import pytest


class RawSubscriber:
    """Socket.IO over a plain blocking socket, so a test decides when it is read."""

    def __init__(self, url: str, api_key: str, compress: bool = False):
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.buffer = bytearray()
        # One inflater for the whole connection: the server keeps its deflate context.
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS) if compress else None
        key = base64.b64encode(os.urandom(16)).decode()
        extensions = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if compress else ""
        self.sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
            ).encode()
        )
        head = self._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert (b"permessage-deflate" in head) == compress, head
        assert self.read_message().startswith("0{")  # Engine.IO open
        self.send_message("40" + json.dumps({"api_key": api_key}))
        assert self.read_message().startswith("40{")  # Socket.IO connect

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buffer += chunk

    def _has_message(self) -> bool:
        """Whether the buffer holds a whole frame."""
        if len(self.buffer) < 2:
            return False
        size, header = self.buffer[1] & 0x7F, 2
        if size == 126:
            header += 2
            size = int.from_bytes(self.buffer[2:4], "big") if len(self.buffer) >= 4 else 1 << 62
        elif size == 127:
            header += 8
            size = int.from_bytes(self.buffer[2:10], "big") if len(self.buffer) >= 10 else 1 << 62
        return len(self.buffer) >= header + size

    def bytes_waiting(self) -> int:
        """Bytes received and not read yet (the socket's receive queue and our buffer)."""
        waiting = fcntl.ioctl(self.sock, termios.FIONREAD, b"\0\0\0\0")
        return len(self.buffer) + int.from_bytes(waiting, sys.byteorder)

    def events_already_here(self) -> list[dict]:
        """The events whose frames are on this socket now, without waiting for more."""
        while select.select([self.sock], [], [], 0)[0]:
            self._fill()
        events = []
        while self._has_message():
            events += self._handle(self.read_message())
        return events

    def events_of_one_wake_up(self, action) -> list[dict]:
        """Block in one recv() while ``action()`` runs; the events in what that recv got."""
        assert not self.buffer and not select.select([self.sock], [], [], 0)[0]
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(self.sock.recv(1 << 20)))
        reader.start()
        action()
        reader.join(30)
        assert chunks and chunks[0], "nothing arrived"
        self.buffer += chunks[0]
        events = []
        while self._has_message():
            events += self._handle(self.read_message())
        return events

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        end = self.buffer.index(marker) + len(marker)
        head, self.buffer = bytes(self.buffer[:end]), self.buffer[end:]
        return head

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = bytes(self.buffer[:size]), self.buffer[size:]
        return data

    def read_message(self) -> str:
        first, second = self._read_exactly(2)
        compressed = bool(first & 0x40)  # RSV1
        assert first & ~0x40 == 0x81, f"expected one unfragmented text frame, got {first:#x}"
        assert not second & 0x80, "server frames are never masked"
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self._read_exactly(2), "big")
        elif size == 127:
            size = int.from_bytes(self._read_exactly(8), "big")
        payload = self._read_exactly(size)
        if compressed:
            assert self.inflater is not None, "compressed frame on an uncompressed connection"
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        return payload.decode()

    def send_message(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def _handle(self, message: str) -> list[dict]:
        """The event a message carries, if any; answers Engine.IO pings."""
        if message == "2":
            self.send_message("3")  # Engine.IO ping -> pong
        elif message.startswith("42"):
            name, data = json.loads(message[2:])
            if name == "event":
                return [data]
        return []

    def read_events(self, count: int, timeout: float = 60.0) -> list[dict]:
        events, deadline = [], time.monotonic() + timeout
        try:
            while len(events) < count:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                events += self._handle(self.read_message())
        except TimeoutError:
            raise AssertionError(f"{len(events)} of {count} events in {timeout} s") from None
        finally:
            self.sock.settimeout(30)
        return events

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(live_server_factory):
    return live_server_factory(mode="eventlet")


@pytest.fixture
def raw_subscribers():
    opened: list[RawSubscriber] = []

    def open_(url: str, api_key: str, compress: bool = False) -> RawSubscriber:
        opened.append(RawSubscriber(url, api_key, compress=compress))
        return opened[-1]

    yield open_
    for subscriber in opened:
        subscriber.close()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_an_event_is_on_every_idle_subscribers_socket_before_its_201(
    server, raw_subscribers, compress
):
    tenant = server.create_tenant("acme")
    subscribers = [raw_subscribers(server.url, tenant["api_key"], compress) for _ in range(3)]
    for i in range(20):
        event = {"type": "t", "id": f"e{i:02d}", "metadata": {"n": i}}
        assert server.post_events(tenant["api_key"], [event]).status_code == 201
        for subscriber in subscribers:
            received = subscriber.events_already_here()
            assert [(e["id"], e["metadata"]) for e in received] == [(event["id"], {"n": i})]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_a_batchs_events_reach_a_socket_in_one_write_as_separate_messages(
    server, raw_subscribers, compress
):
    tenant = server.create_tenant("acme")
    raw = raw_subscribers(server.url, tenant["api_key"], compress=compress)
    events = [{"type": "t", "id": f"b{i}", "metadata": {"i": i}} for i in range(10)]

    def post():
        assert server.post_events(tenant["api_key"], events).status_code == 201

    received = raw.events_of_one_wake_up(post)
    assert [(event["id"], event["metadata"]) for event in received] == [
        (event["id"], event["metadata"]) for event in events
    ]


def _most_a_send_buffer_holds() -> int:
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_a_subscriber_that_stops_reading_gets_every_event_in_order_once_it_reads(
    server, raw_subscribers, compress
):
    tenant = server.create_tenant("acme", rate_limit=100_000)
    raw = raw_subscribers(server.url, tenant["api_key"], compress=compress)
    # ~20 MB of frames (random text, so that compression cannot shrink it much): while
    # this client sleeps, the server writes whole frames, then part of one, then queues
    # the rest, and every request is still answered.
    blob = base64.b64encode(os.urandom(37_500)).decode()
    posted = []
    for batch in range(10):
        events = [
            {"type": "big", "id": f"b{batch:02d}-{i:02d}", "metadata": {"blob": blob}}
            for i in range(40)
        ]
        assert server.post_events(tenant["api_key"], events).status_code == 201
        posted += [event["id"] for event in events]
    # The kernel's buffers hold a fraction of it (the receive queue stays near its first
    # size while nobody reads): the server kept the rest, behind what it had written.
    kernel_holds = raw.bytes_waiting() + _most_a_send_buffer_holds()
    assert kernel_holds < len(posted) * len(blob) // 2, kernel_holds

    received = raw.read_events(len(posted))
    assert [event["id"] for event in received] == posted
    assert all(event["metadata"] == {"blob": blob} for event in received)
