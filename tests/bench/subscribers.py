"""Socket.IO subscribers in one process, driven by ingest.py over stdin/stdout.

    python tests/bench/subscribers.py URL API_KEY CLIENTS TAG

Connects CLIENTS python-socketio AsyncClients (websocket transport, one asyncio loop:
no thread per message, unlike the threaded client) and prints {"ready": n, "failed": m}.
Then it answers one JSON command per stdin line with one JSON line:
  {"cmd": "status"}                                  -> {"connected": n}
  {"cmd": "collect", "expect": N, "digest": D, "timeout": S}
      waits until each client holds N events tagged TAG (or S seconds) -> per-client counts,
      whether their ids hash to D, latencies in ms (now - metadata.sent_at), CPU seconds
  {"cmd": "quit"}                                    -> disconnects, exits
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import sys
import time

import aiohttp
import socketio


def digest(ids) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Subscriber:
    def __init__(self, session: aiohttp.ClientSession, tag: str):
        self.tag = tag
        self.ids: list[str] = []
        self.latencies: list[float] = []
        self.client = socketio.AsyncClient(reconnection=False, http_session=session)
        self.client.on("event", self.on_event)

    async def on_event(self, event: dict) -> None:
        received = time.time()
        metadata = event.get("metadata") or {}
        if metadata.get("bench_tag") == self.tag:
            self.ids.append(event["id"])
            self.latencies.append((received - metadata["sent_at"]) * 1000)

    async def connect(self, url: str, api_key: str) -> bool:
        for _ in range(3):
            try:
                await self.client.connect(
                    url, auth={"api_key": api_key}, transports=["websocket"], wait_timeout=20
                )
                return True
            except (TimeoutError, socketio.exceptions.ConnectionError):
                await asyncio.sleep(0.5)
        return False


async def collect(subscribers: list[Subscriber], command: dict, cpu_at_ready: float) -> dict:
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
    connector = aiohttp.TCPConnector(limit=0)  # websockets count against the pool limit
    async with aiohttp.ClientSession(connector=connector) as session:
        subscribers = [Subscriber(session, tag) for _ in range(count)]
        gate = asyncio.Semaphore(10)  # the server's listen backlog is small

        async def connect(subscriber: Subscriber) -> bool:
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
                reply = {"connected": sum(s.client.connected for s in subscribers)}
            elif command["cmd"] == "collect":
                reply = await collect(subscribers, command, cpu_at_ready)
                cpu_at_ready = cpu_seconds()
            else:
                break
            print(json.dumps(reply), flush=True)
        await asyncio.gather(
            *(s.client.disconnect() for s in subscribers if s.client.connected),
            return_exceptions=True,
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
