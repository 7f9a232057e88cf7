"""The direct fan-out path (ingest/fanout.py) on a real eventlet server.

The server logs, at DEBUG, how many event frames each WebSocket got directly (in how
many writes) and how many went through python-engineio's queue when it closes; these
tests read that line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
import zlib

import pytest

from .test_realtime_e2e import Subscriber

CLOSED_LINE = re.compile(
    r"(\S+) closed: (\d+) frames written directly in (\d+) sends, (\d+) queued"
)


def _frame_counts(server, connections: int, timeout: float = 10.0) -> list[tuple[int, ...]]:
    """(frames written directly, in how many sends, frames queued) per closed socket."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [tuple(map(int, found[1:])) for found in CLOSED_LINE.findall(server.log())]
        if len(counts) >= connections or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


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

    def read_events(self, count: int) -> list[dict]:
        events = []
        while len(events) < count:
            message = self.read_message()
            if message == "2":
                self.send_message("3")  # Engine.IO ping -> pong
            elif message.startswith("42"):
                name, data = json.loads(message[2:])
                if name == "event":
                    events.append(data)
        return events

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def debug_server(live_server_factory):
    return live_server_factory(mode="eventlet", LOG_LEVEL="DEBUG")


def test_subscribers_that_keep_up_get_every_frame_written_directly(debug_server):
    tenant = debug_server.create_tenant("acme")
    subscribers = [Subscriber(debug_server.url, api_key=tenant["api_key"]) for _ in range(3)]
    posted = [f"e{i:02d}" for i in range(30)]
    for event_id in posted:
        response = debug_server.post_events(tenant["api_key"], [{"type": "t", "id": event_id}])
        assert response.status_code == 201
    for subscriber in subscribers:
        subscriber.wait_for(lambda s=subscriber: len(s.events) == len(posted))
        assert [event["id"] for event in subscriber.events] == posted
        subscriber.close()
    assert _frame_counts(debug_server, 3) == [(30, 30, 0)] * 3


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_a_batchs_events_reach_a_socket_in_one_write_as_separate_messages(debug_server, compress):
    tenant = debug_server.create_tenant("acme")
    raw = RawSubscriber(debug_server.url, tenant["api_key"], compress=compress)
    events = [{"type": "t", "id": f"b{i}", "metadata": {"i": i}} for i in range(10)]
    assert debug_server.post_events(tenant["api_key"], events).status_code == 201
    received = raw.read_events(len(events))
    assert [(event["id"], event["metadata"]) for event in received] == [
        (event["id"], event["metadata"]) for event in events
    ]
    raw.close()
    assert _frame_counts(debug_server, 1) == [(10, 1, 0)]


def test_a_compressed_connection_gets_its_own_frames_directly(debug_server):
    tenant = debug_server.create_tenant("acme")
    raw = RawSubscriber(debug_server.url, tenant["api_key"], compress=True)
    posted = [f"e{i:02d}" for i in range(20)]
    for event_id in posted:
        events = [{"type": "t", "id": event_id, "metadata": {"n": event_id}}]
        assert debug_server.post_events(tenant["api_key"], events).status_code == 201
    received = raw.read_events(len(posted))
    assert [(event["id"], event["metadata"]["n"]) for event in received] == list(
        zip(posted, posted, strict=True)
    )
    raw.close()
    assert _frame_counts(debug_server, 1) == [(20, 20, 0)]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compressed"])
def test_a_subscriber_that_stops_reading_gets_every_event_in_order_once_it_reads(
    debug_server, compress
):
    tenant = debug_server.create_tenant("acme", rate_limit=100_000)
    raw = RawSubscriber(debug_server.url, tenant["api_key"], compress=compress)
    # ~20 MB of frames, far more than the two kernel buffers between us hold: the
    # server's writes go from whole, to partial, to queued, while this client sleeps.
    # Random text, so that compression cannot shrink it below that.
    blob = base64.b64encode(os.urandom(37_500)).decode()
    posted = []
    for batch in range(10):
        events = [
            {"type": "big", "id": f"b{batch:02d}-{i:02d}", "metadata": {"blob": blob}}
            for i in range(40)
        ]
        assert debug_server.post_events(tenant["api_key"], events).status_code == 201
        posted += [event["id"] for event in events]

    received = raw.read_events(len(posted))
    assert [event["id"] for event in received] == posted
    assert all(event["metadata"] == {"blob": blob} for event in received)
    raw.close()
    [(direct, _, queued)] = _frame_counts(debug_server, 1)
    assert direct + queued == len(posted)
    assert direct > 0 and queued > 0, (direct, queued)
