"""The Docker image starts as it is built: non-root, without DATABASE_URL, from its own CMD.

No Docker engine runs here or in CI, so this test plays the image from the Dockerfile
itself, so that the two cannot drift: its COPY lines copy the app into a root-owned
folder (as /app is), its ENV (with DATA_DIR moved to a fresh folder that the image's
user owns, as the image's VOLUME is, and a free PORT) is the whole environment, and its
CMD and HEALTHCHECK run as its USER (a numeric uid:gid, so no host account is needed),
with the repository's .venv as the image's Python. Skipped only when not root outside CI.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support import require

from .server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Image:
    """What the last stage of the Dockerfile says about running the container."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    user: str = "0"
    volumes: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)


def read_dockerfile(path: Path = ROOT / "Dockerfile") -> Image:
    image = Image()
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            image = Image()
        elif keyword == "ENV":
            words = shlex.split(rest)
            if "=" in words[0]:
                image.env.update(word.split("=", 1) for word in words)
            else:  # the legacy `ENV NAME value` form
                image.env[words[0]] = rest.split(None, 1)[1]
        elif keyword == "WORKDIR":
            image.workdir = os.path.join(image.workdir, rest)
        elif keyword == "COPY":
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            image.copies.append((words[:-1], words[-1]))
        elif keyword == "USER":
            image.user = rest
        elif keyword == "VOLUME":
            image.volumes += json.loads(rest) if rest.startswith("[") else rest.split()
        elif keyword == "CMD":
            image.cmd = _command(rest)
        elif keyword == "HEALTHCHECK":
            _, _, command = rest.partition("CMD ")
            image.healthcheck = _command(command)
    return image


def _command(text: str) -> list[str]:
    # Exec form is a JSON list; shell form runs under /bin/sh -c, as Docker runs it.
    return json.loads(text) if text.startswith("[") else ["/bin/sh", "-c", text]


def _needs_root() -> None:
    reason = "needs root to run the start command as the image's user (CI runs it as root)"
    require("root", None if os.geteuid() == 0 else reason)


class Container:
    """The image's CMD as a process; a fake root holds /app (root's) and the volume (the user's)."""

    def __init__(self, image: Image, root: Path):
        self.image, self.root = image, root
        self.uid, self.gid = (int(n) for n in image.user.split(":"))
        self.app_dir = self.inside(image.workdir)
        self.data_dir = self.inside(image.env["DATA_DIR"])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "container.log"
        self.process: subprocess.Popen | None = None
        home = self.inside("/home/ingest")
        # The whole environment: the image's ENV, its Python first on PATH, nothing from CI
        # (no DATABASE_URL, REDIS_URL, ADMIN_TOKEN or SECRET_KEY).
        self.env = {
            **image.env,
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
        }
        self._build(home)

    def inside(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _build(self, home: Path) -> None:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        self.app_dir.mkdir(parents=True)
        for sources, destination in self.image.copies:
            target = self.app_dir / destination
            for source in sources:
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, target, ignore=ignore)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, target / source)
        for folder in [self.root, *self.app_dir.parents, self.app_dir]:
            if folder.is_relative_to(self.root):
                folder.chmod(0o755)
        for owned in (self.data_dir, home):
            owned.mkdir(parents=True)
            os.chown(owned, self.uid, self.gid)

    def run_as_user(self, command: list[str], **kwargs):
        return self._as_user + command, {"cwd": self.app_dir, "env": self.env, **kwargs}

    @functools.cached_property
    def _as_user(self) -> list[str]:
        plain = [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
        ]
        # Through sh: setpriv's own exec still has root's right to look anywhere.
        python = ["/bin/sh", "-c", '"$0" -c "import flask"', sys.executable]
        if subprocess.run([*plain, "--", *python], capture_output=True).returncode == 0:
            return [*plain, "--"]
        # The .venv's interpreter lives where only root may look (here: pyenv under /root,
        # 0700). The user may then read and search everything, as it may the image's own
        # /usr/local; it still writes only where its uid may.
        print(f"uid {self.uid} cannot run {sys.executable}: granting CAP_DAC_READ_SEARCH")
        caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        return [*plain, *caps, "--"]

    def start(self) -> Container:
        command, kwargs = self.run_as_user(self.image.cmd)
        log = open(self.log_path, "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the start command exited:\n{self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"/health did not answer 200 in 60 s:\n{self.log()}")

    def healthcheck(self) -> subprocess.CompletedProcess:
        command, kwargs = self.run_as_user(self.image.healthcheck)
        return subprocess.run(command, capture_output=True, text=True, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def container():
    _needs_root()
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run the start command as another user")
    image = read_dockerfile()
    root = Path(tempfile.mkdtemp(prefix="ingest-image-"))
    made = Container(image, root)
    yield made
    made.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_dockerfile_runs_as_non_root_with_data_dir_on_a_volume():
    image = read_dockerfile()
    # Numeric, so that Kubernetes' runAsNonRoot can check it; the test runs as it.
    assert re.fullmatch(r"[1-9][0-9]*:[0-9]+", image.user), image.user
    assert "DATABASE_URL" not in image.env
    assert image.env.get("DATA_DIR") in image.volumes
    assert image.cmd and image.healthcheck


def test_dockerignore_sends_what_the_image_copies_and_not_the_rest():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.lstrip("*/")) for p in patterns
        )

    copied = [source for sources, _ in read_dockerfile().copies for source in sources]
    assert copied and not [source for source in copied if ignored(source)]
    for heavy_or_secret in (".venv", ".git", "instance", "bench-results", "ingest/__pycache__"):
        assert ignored(heavy_or_secret), heavy_or_secret


def test_start_command_serves_as_non_root_without_database_url(container):
    container.start()
    admin = {"Authorization": "Bearer " + _kept_token(container)}

    tenant = requests.post(
        container.url + "/api/v1/tenants", json={"name": "acme"}, headers=admin, timeout=10
    )
    assert tenant.status_code == 201, tenant.text
    key = {"X-API-Key": tenant.json()["api_key"]}
    posted = requests.post(
        container.url + "/api/v1/events", json={"type": "signup"}, headers=key, timeout=10
    )
    assert posted.status_code == 201, posted.text
    assert (container.data_dir / "ingest.db").exists()

    health = container.healthcheck()
    assert health.returncode == 0, health.stdout + health.stderr


def test_restarted_container_keeps_its_admin_token_and_events(container):
    container.start()
    token = _kept_token(container)
    admin = {"Authorization": f"Bearer {token}"}
    key = requests.post(
        container.url + "/api/v1/tenants", json={"name": "acme"}, headers=admin, timeout=10
    ).json()["api_key"]
    container.stop()

    container.start()
    assert _kept_token(container) == token
    listed = requests.get(container.url + "/api/v1/tenants", headers=admin, timeout=10)
    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["data"]] == ["acme"]
    events = requests.get(container.url + "/api/v1/events", headers={"X-API-Key": key}, timeout=10)
    assert events.status_code == 200, events.text


def _kept_token(container: Container) -> str:
    """The generated admin token: in the data folder, the user's, readable by it alone."""
    path = container.data_dir / "admin_token"
    assert path.exists(), container.log()
    assert os.stat(path).st_uid == container.uid
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    assert token in container.log()  # printed at start, as `make run` does
    return token
