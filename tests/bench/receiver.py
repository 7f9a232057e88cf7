"""A fast webhook receiver in one process, driven by ingest.py over stdin/stdout.

    python tests/bench/receiver.py

Serves HTTP/1.1 with keep-alive on a free loopback port (a bare asyncio Protocol on
uvloop) and prints {"port": p}. Every request is answered 200 with an empty body at
once; the receiver keeps its webhook-id and arrival time (time.time(), the clock the
sender stamps 201s with) and checks its Standard Webhooks signature. Then it answers
one JSON command per stdin line with one JSON line:
  {"cmd": "secret", "secret": S}    -> {"ok": true}; signatures are checked against S
  {"cmd": "count"}                  -> {"received": n, "distinct": d}
  {"cmd": "collect", "expect": N, "timeout": S}
      waits until N distinct webhook-ids arrived (or S seconds) -> the arrivals as
      [[id, time], ...] in arrival order, duplicates, bad signatures, requests without
      webhook headers, connections opened, CPU seconds; then forgets them
  {"cmd": "quit"}                   -> exits

Why not aiohttp or http.server: this process shares the machine's two cores with the
server it measures, at a thousand requests a second or more. Parsing a request here
costs a few tens of microseconds; a framework's request object costs several times that.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import resource
import sys
import time

import uvloop

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Tally:
    """What arrived since the last collect."""

    def __init__(self):
        self.key: bytes | None = None
        self.arrivals: list[tuple[str, float]] = []
        self.seen: set[str] = set()
        self.duplicates = 0
        self.bad_signatures = 0
        self.unsigned = 0
        self.connections = 0

    def add(self, head: dict[bytes, bytes], body: bytes, arrived: float) -> None:
        message_id = head.get(b"webhook-id")
        timestamp = head.get(b"webhook-timestamp")
        signatures = head.get(b"webhook-signature")
        if message_id is None or timestamp is None or signatures is None:
            self.unsigned += 1
            return
        if self.key is not None:
            signed = b"%s.%s.%s" % (message_id, timestamp, body)
            expected = b"v1," + base64.b64encode(hmac.digest(self.key, signed, hashlib.sha256))
            if not any(hmac.compare_digest(expected, s) for s in signatures.split()):
                self.bad_signatures += 1
        event_id = message_id.decode()
        if event_id in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(event_id)
        self.arrivals.append((event_id, arrived))


class Receiver(asyncio.Protocol):
    """One keep-alive connection: requests in, 200s out, in order."""

    def __init__(self, tally: Tally):
        self.tally = tally
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.tally.connections += 1

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        buffer = self.buffer
        buffer += data
        answered = 0
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = {}
            for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                head[name.strip().lower()] = value.strip()
            length = int(head.get(b"content-length", b"0"))
            if len(buffer) < end + 4 + length:
                break
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            self.tally.add(head, body, arrived)
            answered += 1
        if answered:
            self.transport.write(RESPONSE * answered)


async def collect(tally: Tally, command: dict, cpu_at_start: float) -> dict:
    deadline = time.monotonic() + command["timeout"]
    while time.monotonic() < deadline and len(tally.seen) < command["expect"]:
        await asyncio.sleep(0.02)
    reply = {
        "arrivals": [[event_id, round(at, 6)] for event_id, at in tally.arrivals],
        "distinct": len(tally.seen),
        "duplicates": tally.duplicates,
        "bad_signatures": tally.bad_signatures,
        "unsigned": tally.unsigned,
        "connections": tally.connections,
        "cpu_seconds": round(cpu_seconds() - cpu_at_start, 3),
    }
    tally.arrivals, tally.seen = [], set()
    tally.duplicates = tally.bad_signatures = tally.unsigned = tally.connections = 0
    return reply


async def main() -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    server = await loop.create_server(lambda: Receiver(tally), "127.0.0.1", 0, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    cpu_at_start = cpu_seconds()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = json.loads(line) if line.strip() else {"cmd": "quit"}
        if command["cmd"] == "secret":
            tally.key = base64.b64decode(command["secret"].removeprefix("whsec_"))
            reply = {"ok": True}
        elif command["cmd"] == "count":
            reply = {"received": len(tally.arrivals), "distinct": len(tally.seen)}
        elif command["cmd"] == "collect":
            reply = await collect(tally, command, cpu_at_start)
            cpu_at_start = cpu_seconds()
        else:
            break
        print(json.dumps(reply), flush=True)
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
