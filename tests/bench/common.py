"""Shared by the benchmark scripts: fresh databases, the live server, statistics, reports."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

import requests

from tests.e2e.server import ROOT, LiveServer

RESULTS_DIR = ROOT / "bench-results"
BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- the server ------------------------------------------------------------------------------


class BenchServer(LiveServer):
    """LiveServer with a choice of entry point (``argv``), the default webhook worker (a
    process beside the server, unless WEBHOOK_WORKER in the environment says otherwise)
    and a view of its memory and CPU."""

    ready_statuses = (200,)

    def __init__(self, database_url: str, mode: str, argv: list[str] | None = None, **env: str):
        worker = os.environ.get("WEBHOOK_WORKER") or "process"
        super().__init__(database_url, mode=mode, **{"WEBHOOK_WORKER": worker, **env})
        self.argv = argv or ["wsgi.py"]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        """The serving process's, without its webhook worker's (worker_cpu_seconds)."""
        return cpu_seconds(self.pid)

    def worker_cpu_seconds(self) -> float:
        """The other processes of the server's group: its webhook worker, while it runs."""
        return sum(cpu_seconds(pid) for pid in self.group_pids() if pid != self.pid)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise this process's (and so its children's) open-files limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- statistics and reports --------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(headers), rule, *map(line, cells)])


def versions() -> dict:
    names = ["Flask", "Flask-SocketIO", "eventlet", "SQLAlchemy", "psycopg2-binary", "uvloop"]
    found = {}
    for name in names:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment() -> dict:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "ingest", "wsgi.py", "migrations"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "commit": commit,
        "app_code_uncommitted_changes": bool(dirty),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "packages": versions(),
    }


def write_results(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


# Equivalent to no limits, for servers where RATELIMIT_ENABLED=false does not work yet.
HUGE_LIMITS = {
    "RATELIMIT_DEFAULT": "1000000000/minute",
    "RATELIMIT_READS": "1000000000/minute",
    "RATELIMIT_AUTH_FAILURES": "1000000000/minute",
}


def start_server(
    database_url: str, mode: str, argv: list[str] | None = None, migrate: bool = True, **env: str
):
    """A started BenchServer with rate limiting off; returns (server, how limits were off).

    With RATELIMIT_ENABLED=false some versions of the app answer every authenticated
    request with a 500 (auth.py reads ``limiter.limiter``, which is None then); the
    server is then restarted with limits no benchmark can reach.
    """
    env = {"RATELIMIT_ENABLED": "false", "LOG_LEVEL": "WARNING", **env}
    server = BenchServer(database_url, mode, argv, **env).start(migrate=migrate)
    from tests.e2e.server import ADMIN_TOKEN

    probe = requests.get(
        server.url + "/api/v1/tenants",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    if probe.status_code == 200:
        return server, "RATELIMIT_ENABLED=false"
    server.stop()
    print(
        f"  ! with RATELIMIT_ENABLED=false an authenticated request got {probe.status_code};"
        " using limits of 1e9/minute instead"
    )
    env = {**env, "RATELIMIT_ENABLED": "true", **HUGE_LIMITS}
    server = BenchServer(database_url, mode, argv, **env).start(migrate=False)
    return server, "limits of 1e9/minute (RATELIMIT_ENABLED=false answered 500)"


def bench_app(database_url: str):
    """The app in this process, on the bench's database: to load or insert rows directly."""
    from ingest import create_app
    from ingest.config import normalise_database_url

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
            "SOCKETIO_ASYNC_MODE": "threading",
            "RATELIMIT_STORAGE_URI": "memory://",
            "LOG_LEVEL": "WARNING",
        }
    )
