"""Real server processes for end-to-end tests: `python wsgi.py` on a free port."""

from __future__ import annotations

import os
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """One server process. ``start()`` runs migrations, then waits for /health."""

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
            [sys.executable, "wsgi.py"], cwd=ROOT, env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code in (200, 503):
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer in 30 s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a node dies; start() runs it again."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

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
