"""Load for the bench steps: bounded wrk runs, a paced sender of single events, py-spy."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from tests.bench.common import BENCH_DIR, ROOT
from tests.bench.data import EventFactory

# --- wrk -------------------------------------------------------------------------------------


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (out.stdout + out.stderr).split("Copyright")[0].strip()


def run_wrk(url: str, api_key: str, bodies: list[str], connections: int, seconds: float) -> dict:
    """One bounded wrk run POSTing ``bodies`` in turn; the Lua script's summary."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(bodies) + "\n")
    try:
        command = [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(BENCH_DIR / "post.lua"),
            url,
            "--",
            f.name,
            api_key,
        ]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(f.name)
    match = re.search(r"^WRK_JSON (.*)$", out.stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(match.group(1))
    result["seconds"] = result["duration_us"] / 1e6
    result["rps"] = result["s2xx"] / result["seconds"]
    return result


def wrk_summary(result: dict, per_request: int = 1) -> dict:
    return {
        "events_per_s": round(result["s201"] * per_request / result["seconds"], 1),
        "requests_per_s": round(result["rps"], 1),
        "p50_ms": result["latency_us"]["p50"] / 1000,
        "p99_ms": result["latency_us"]["p99"] / 1000,
        "non_2xx": result["sother"],
        "socket_errors": sum(result["errors"].values()) - result["errors"]["status"],
        "wrk": result,
    }


# --- the paced sender ------------------------------------------------------------------------


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection doing one POST at a time, on asyncio streams.

    The paced sender's own CPU comes out of the same two cores as the server's:
    aiohttp cost 0.65-1.1 ms of CPU per request on a slow machine, this about half that.
    """

    def __init__(self, url: str, headers: dict[str, str]):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.head}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = int(head.split(" ", 2)[1])
        length = re.search(r"(?im)^content-length:\s*(\d+)", head)
        body = await self.reader.readexactly(int(length.group(1))) if length else b""
        if re.search(r"(?im)^connection:\s*close", head):
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def paced_ingest(url: str, api_key: str, rate: float, seconds: float, tag: str) -> dict:
    """POST single events at ``rate``/s, each stamped with its send time; ids of the 201s.

    ``answered_at`` maps each id to the time.time() its 201 arrived.
    """
    # Enough lanes that a slow answer delays no later send: 64 lanes keep 500/s up to
    # a 128 ms response time.
    total, lanes = int(rate * seconds), 64
    factory = EventFactory(seed=3)
    events = [factory.event() for _ in range(min(total, 2000))]
    ids, statuses, answered_ms, answered_at = [], Counter(), [], {}
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    clients = [KeepAliveClient(url, headers) for _ in range(lanes)]
    start = time.monotonic() + 0.1

    async def lane(first: int) -> None:
        client = clients[first]
        for i in range(first, total, lanes):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event = events[i % len(events)]
            event["metadata"]["bench_tag"] = tag
            event["metadata"]["sent_at"] = sent = time.time()
            status, body = await client.post(json.dumps(event).encode())
            statuses[status] += 1
            if status == 201:
                answered = time.time()
                ids.append(event_id := json.loads(body)["id"])
                answered_at[event_id] = answered
                answered_ms.append((answered - sent) * 1000)

    try:
        await asyncio.gather(*(lane(k) for k in range(lanes)))
    finally:
        for client in clients:
            client.close()
    elapsed = time.monotonic() - start
    return {
        "ids": ids,
        "statuses": dict(statuses),
        "rate": total / elapsed,
        "elapsed": elapsed,
        "answered": answered_ms,
        "answered_at": answered_at,
    }


# --- profiling -------------------------------------------------------------------------------


def profile(pid: int, seconds: float, label: str, load: Callable[[float], object]) -> dict:
    """py-spy samples of a process (on-CPU, holding the GIL) while ``load(seconds - 2)`` runs."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return {"error": "py-spy missing: .venv/bin/pip install py-spy==0.4.3"}
    raw = ROOT / "bench-results" / f"profile-{label}.txt"
    raw.parent.mkdir(exist_ok=True)
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            # Only samples that hold the GIL: time a greenlet spends waiting (in the
            # hub's epoll, or on the GIL) otherwise shows up as if it were work.
            "--gil",
            "--format",
            "raw",
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    load(seconds - 2)
    spy.wait(timeout=seconds + 60)
    if not raw.exists():
        return {"error": spy.stderr.read()}
    inclusive, own, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        count = int(count)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    share = lambda c: round(100 * c / total, 1)  # noqa: E731
    return {
        "samples": total,
        "raw": str(raw.relative_to(ROOT)),
        "inclusive_pct": [(n, share(c)) for n, c in inclusive.most_common(40)],
        "self_pct": [(n, share(c)) for n, c in own.most_common(25)],
    }


def _frame_name(frame: str) -> str:
    """'view (ingest/events.py:52)' -> 'view (ingest/events.py)'; site-packages shortened."""
    frame = re.sub(r":\d+\)$", ")", frame.strip())
    return re.sub(r"\(.*?site-packages/", "(", frame).replace(str(ROOT) + "/", "")
