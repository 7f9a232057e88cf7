"""Real server processes for end-to-end tests: `python wsgi.py` on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
# `flask --app wsgi <command>`: the operators' commands, run as they would be.
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def group_pids(group: int) -> list[int]:
    """The live processes of a process group (zombies, already gone, are not counted)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _parent, pgid = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgid) == group and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """One server and the processes it starts (its webhook worker), in a process group of
    their own. ``start()`` runs migrations, then waits for /health.

    WEBHOOK_WORKER is off unless a test asks for it: a worker process beside every
    server would double the processes (and their start-up) of tests that send no webhooks.
    """

    argv = ["wsgi.py"]
    ready_statuses = (200, 503)

    def __init__(self, database_url: str, mode: str = "eventlet", **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = mode
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": database_url,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "SECRET_KEY": "e2e-secret-key-that-is-long-enough-for-hs256",
            "SOCKETIO_ASYNC_MODE": mode,
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            "WEBHOOK_WORKER": "off",
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"ingest-e2e-{self.port}.log"

    def migrate(self) -> None:
        subprocess.run(
            [*FLASK, "db", "upgrade"], cwd=ROOT, env=self.env, check=True, capture_output=True
        )

    def start(self, migrate: bool = True) -> LiveServer:
        if migrate:
            self.migrate()
        log = open(self.log_path, "w")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, *self.argv],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code in self.ready_statuses:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer in 30 s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM to the server, as a service manager stops it; its worker finishes and goes.

        Returns once every process of the group is gone (a worker still connected would
        keep its database from being dropped).
        """
        if self.process and self.process.poll() is None:
            self.process.terminate()
        self._end_group(wait=20)

    def kill(self) -> None:
        """SIGKILL to every process of the server, as when a node dies; start() runs it again."""
        self._end_group(wait=0)

    def _end_group(self, wait: float) -> None:
        if self.process is None:
            return
        deadline = time.monotonic() + wait
        while group_pids(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        while group_pids(self.process.pid):
            time.sleep(0.01)

    def group_pids(self) -> list[int]:
        """The server's process and the processes it started (its webhook worker)."""
        return group_pids(self.process.pid) if self.process else []

    def worker_pid(self) -> int:
        """The webhook worker the server started beside itself (WEBHOOK_WORKER=process)."""
        [worker] = [pid for pid in self.group_pids() if pid != self.process.pid]
        return worker

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    # --- API shortcuts -------------------------------------------------------------------

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def create_tenant(self, name: str, **fields) -> dict:
        response = self.admin("POST", "/api/v1/tenants", json={"name": name, **fields})
        response.raise_for_status()
        return response.json()

    def post_events(self, api_key: str, events: list[dict]) -> requests.Response:
        return requests.post(
            self.url + "/api/v1/events/batch",
            json={"events": events},
            headers={"X-API-Key": api_key},
            timeout=10,
        )
