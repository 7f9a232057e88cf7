"""Socket.IO subscribers in one process, driven by ingest.py over stdin/stdout.

    python tests/bench/subscribers.py URL API_KEY CLIENTS TAG

Connects CLIENTS WebSocket clients that speak the Socket.IO v5 / Engine.IO v4
protocol directly (``LeanSubscriber``, one uvloop event loop) and prints
{"ready": n, "failed": m}. Then it answers one JSON command per stdin line with one
JSON line:
  {"cmd": "status"}                                  -> {"connected": n}
  {"cmd": "collect", "expect": N, "digest": D, "timeout": S}
      waits until each client holds N events tagged TAG (or S seconds) -> per-client counts,
      whether their ids hash to D, latencies in ms (now - metadata.sent_at), CPU seconds
  {"cmd": "quit"}                                    -> disconnects, exits

Why not python-socketio's AsyncClient: at 50 subscribers x 500 events/s the measuring
side receives 25,000 messages a second. AsyncClient spent ~35 us of CPU on each (15 us
even on uvloop), so on a 2-core machine the five subscriber processes took ~0.9 of a
core from the server they were measuring, and the 50-subscriber p99 measured that
contention. This client does only what a subscriber must (WebSocket upgrade, Socket.IO
connect with auth, pong, decode each event as JSON) for ~6 us a message on uvloop.
The service's own tests use python-socketio's clients (tests/e2e/test_realtime.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import resource
import struct
import sys
import time
from urllib.parse import urlsplit

import uvloop


def digest(ids) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class WebSocketProtocol(asyncio.Protocol):
    """The client side of RFC 6455, as little as a subscriber needs.

    Frames from a server are unmasked; a message here is one text frame (python-engineio
    does not fragment). Frames we send are masked, as the RFC requires of clients.
    """

    def __init__(self, host: str, on_text):
        self.host = host
        self.on_text = on_text
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done() and not self._read_upgrade():
            return
        self._read_frames()

    def _read_upgrade(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
        del self.buffer[: end + 4]
        if not status.startswith(b"HTTP/1.1 101"):
            self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
            self.transport.close()
            return False
        self.upgraded.set_result(None)
        return True

    def _read_frames(self) -> None:
        buffer, position, size = self.buffer, 0, len(self.buffer)
        while size - position >= 2:
            opcode, length, header = buffer[position] & 0x0F, buffer[position + 1] & 0x7F, 2
            if length == 126:
                if size - position < 4:
                    break
                length, header = int.from_bytes(buffer[position + 2 : position + 4]), 4
            elif length == 127:
                if size - position < 10:
                    break
                length, header = int.from_bytes(buffer[position + 2 : position + 10]), 10
            if size - position < header + length:
                break
            payload = bytes(buffer[position + header : position + header + length])
            position += header + length
            if opcode == 1:
                self.on_text(payload.decode())
            elif opcode == 9:
                self.send(payload, opcode=10)  # a WebSocket ping (engineio uses its own)
            elif opcode == 8:
                self.transport.close()
        del buffer[:position]

    def send(self, data: str | bytes, opcode: int = 1) -> None:
        payload = data.encode() if isinstance(data, str) else data
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i & 3] for i, byte in enumerate(payload))
        self.transport.write(header + mask + masked)

    def connection_lost(self, error: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(error or ConnectionError("closed during the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)


class LeanSubscriber:
    """One Socket.IO connection on the default namespace, WebSocket transport only.

    Engine.IO packets are one per WebSocket text frame: '0' open, '2' ping (answered
    with '3'), '4' message. Socket.IO messages inside: '40' connect (we send our auth
    object; the server answers '40{"sid": ...}' or '44{"message": ...}'), '42' event.
    """

    EVENT_PREFIX = '42["event",'
    ID_PREFIX = '42["event",{"id":"'
    SENT_AT = '"sent_at":'

    def __init__(self, tag: str):
        self.tag = tag
        self.tag_marker = f'"bench_tag":"{tag}"'
        self.ids: list[str] = []
        self.latencies: list[float] = []
        self.protocol: WebSocketProtocol | None = None
        self.api_key = ""
        self.joined: asyncio.Future | None = None

    @property
    def connected(self) -> bool:
        return self.protocol is not None and not self.protocol.closed.done()

    async def connect(self, url: str, api_key: str) -> bool:
        parts = urlsplit(url)
        self.api_key = api_key
        loop = asyncio.get_running_loop()
        for _ in range(3):
            self.joined = loop.create_future()
            try:
                _, self.protocol = await loop.create_connection(
                    lambda: WebSocketProtocol(parts.netloc, self._on_text),
                    parts.hostname,
                    parts.port,
                )
                await asyncio.wait_for(self.protocol.upgraded, 20)
                await asyncio.wait_for(self.joined, 20)
                return True
            except (TimeoutError, ConnectionError, OSError):
                if self.protocol is not None:
                    self.protocol.transport.close()
                    self.protocol = None
                await asyncio.sleep(0.5)
        return False

    def _on_text(self, data: str) -> None:
        if data.startswith(self.EVENT_PREFIX):
            self._on_event(data)
        elif data == "2":
            self.protocol.send("3")
        elif data.startswith("0"):  # Engine.IO open: join the default namespace
            self.protocol.send("40" + json.dumps({"api_key": self.api_key}))
        elif data.startswith("40"):
            self.joined.set_result(None)
        elif data.startswith("44") and not self.joined.done():
            self.joined.set_exception(ConnectionError(f"connection refused: {data[:200]}"))

    def _on_event(self, data: str) -> None:
        """Record a bench event's id and latency, read without decoding the whole event.

        Decoding it was two thirds of this client's Python time per message. The server
        renders an event as {"id": ..., "type": ..., "metadata": {...}, ...} and the
        sender puts bench_tag and then sent_at last in the metadata, so plain searches
        find them; a message of another shape is decoded in full.
        """
        received = time.time()
        tag_at = data.find(self.tag_marker)
        if tag_at < 0:
            return  # not this run's event
        sent_at = data.find(self.SENT_AT, tag_at)
        if data.startswith(self.ID_PREFIX) and sent_at >= 0:
            event_id = data[len(self.ID_PREFIX) : data.index('"', len(self.ID_PREFIX))]
            start = sent_at + len(self.SENT_AT)
            sent = float(data[start : data.index("}", start)])
        else:
            event = json.loads(data[len(self.EVENT_PREFIX) : -1])
            event_id, sent = event["id"], event["metadata"]["sent_at"]
        self.ids.append(event_id)
        self.latencies.append((received - sent) * 1000)

    async def disconnect(self) -> None:
        if self.connected:
            self.protocol.send("41")
            self.protocol.transport.close()
            await self.protocol.closed


async def collect(subscribers: list[LeanSubscriber], command: dict, cpu_at_ready: float) -> dict:
    deadline = time.monotonic() + command["timeout"]
    while time.monotonic() < deadline and any(len(s.ids) < command["expect"] for s in subscribers):
        await asyncio.sleep(0.05)
    result = {
        "counts": [len(s.ids) for s in subscribers],
        "duplicates": [len(s.ids) - len(set(s.ids)) for s in subscribers],
        "complete": [digest(set(s.ids)) == command["digest"] for s in subscribers],
        "latencies_ms": [round(x, 3) for s in subscribers for x in s.latencies],
        "cpu_seconds": cpu_seconds() - cpu_at_ready,
    }
    for s in subscribers:
        s.ids.clear()
        s.latencies.clear()
    return result


async def main(url: str, api_key: str, count: int, tag: str) -> None:
    subscribers = [LeanSubscriber(tag) for _ in range(count)]
    gate = asyncio.Semaphore(10)  # the server's listen backlog is small

    async def connect(subscriber: LeanSubscriber) -> bool:
        async with gate:
            return await subscriber.connect(url, api_key)

    connected = await asyncio.gather(*(connect(s) for s in subscribers))
    print(json.dumps({"ready": sum(connected), "failed": count - sum(connected)}), flush=True)
    cpu_at_ready = cpu_seconds()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = json.loads(line) if line.strip() else {"cmd": "quit"}
        if command["cmd"] == "status":
            reply = {"connected": sum(s.connected for s in subscribers)}
        elif command["cmd"] == "collect":
            reply = await collect(subscribers, command, cpu_at_ready)
            cpu_at_ready = cpu_seconds()
        else:
            break
        print(json.dumps(reply), flush=True)
    await asyncio.gather(*(s.disconnect() for s in subscribers), return_exceptions=True)


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
