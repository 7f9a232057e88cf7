"""The server entry point itself (wsgi.py), as `make run` starts it."""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from .server import ADMIN_TOKEN, ROOT, free_port


def test_large_keep_alive_responses_are_not_held_back_by_nagle(live_server_factory):
    """Responses over eventlet's 16 KiB write buffer used to wait ~40 ms for a delayed ACK.

    The bound is loose (the stall is a fixed 40 ms; an answer takes a few ms here).
    """
    server = live_server_factory(mode="eventlet")
    tenant = server.create_tenant("acme")
    server.post_events(
        tenant["api_key"], [{"type": "page.view", "metadata": {"path": "/x" * 100}}] * 60
    )
    session = requests.Session()
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        response = session.get(
            server.url + "/api/v1/events", headers={"X-API-Key": tenant["api_key"]}, timeout=5
        )
        timings.append(time.perf_counter() - started)
        assert len(response.content) > 16 * 1024
    assert statistics.median(timings) < 0.035, timings


def _python_in_repo(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess:
    """Run this project's Python with ``args`` from the repository root, as `make` would."""
    environment = {**os.environ, "DATABASE_URL": database_url, **env}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrating_through_the_flask_cli_prints_no_traceback(tmp_path):
    """`flask --app wsgi db upgrade` imports wsgi.py after Flask: it must not try to patch."""
    done = _python_in_repo(
        "-m",
        "flask",
        "--app",
        "wsgi",
        "db",
        "upgrade",
        database_url=f"sqlite:///{tmp_path / 'cli.db'}",
        SOCKETIO_ASYNC_MODE="eventlet",
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "Eventlet is deprecated" not in done.stderr  # the CLI never imports eventlet
    assert "Running upgrade" in done.stderr


def test_the_entry_point_freezes_what_lives_as_long_as_the_process(tmp_path):
    """Full GC walks of the ~140k start-up objects stalled every request for ~70 ms."""
    done = _python_in_repo(
        "-c",
        "import gc, wsgi; print(gc.get_freeze_count())",
        database_url=f"sqlite:///{tmp_path / 'gc.db'}",
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip().splitlines()[-1]) > 50_000


def test_bodies_and_responses_larger_than_the_connection_buffers_pass_whole(live_server_factory):
    """Connections get 2 KiB buffers (wsgi.py): a ~250 KiB batch and its listing still pass."""
    server = live_server_factory(mode="eventlet")
    key = server.create_tenant("acme")["api_key"]
    events = [
        {"type": "big.batch", "id": f"e{i}", "metadata": {"pad": "x" * 200}} for i in range(1000)
    ]
    session = requests.Session()
    stored = session.post(
        server.url + "/api/v1/events/batch",
        json={"events": events},
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["accepted"] == 1000
    listed = session.get(
        server.url + "/api/v1/events?limit=500", headers={"X-API-Key": key}, timeout=30
    )
    assert listed.status_code == 200
    assert len(listed.json()["data"]) == 500
    assert all(e["metadata"]["pad"] == "x" * 200 for e in listed.json()["data"])


def test_the_dockerfiles_command_migrates_and_serves(tmp_path):
    """The image's CMD as written: it once ran a gunicorn worker class gunicorn 27 lacks."""
    command = json.loads(
        re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    )
    port = free_port()
    env = {
        **os.environ,
        # `python` and `flask` are this project's, as in the image.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'image.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SECRET_KEY": "dockerfile-test-secret-key-long-enough-for-hs256",
    }
    log = tmp_path / "server.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the command exited:\n{log.read_text()}"
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"no answer in 60 s:\n{log.read_text()}"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_concurrent_posts_share_commits_and_each_gets_its_own_answer(live_server):
    """32 clients at once: groups form, hand their lead on, and answer every request.

    Each id is posted twice, so some groups hold the same id twice: one answer is
    201, the other 200 with the same stored event.
    """
    from concurrent.futures import ThreadPoolExecutor

    key = live_server.create_tenant("acme")["api_key"]
    ids = [f"c{i}" for i in range(150)]

    def post(event_id: str):
        response = requests.post(
            live_server.url + "/api/v1/events",
            json={"type": "concurrent", "id": event_id},
            headers={"X-API-Key": key},
            timeout=30,
        )
        return event_id, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(post, [event_id for event_id in ids for _ in range(2)]))
    assert all(body["id"] == event_id for event_id, _, body in answers)
    by_id: dict[str, list[int]] = {}
    for event_id, status, _ in answers:
        by_id.setdefault(event_id, []).append(status)
    assert all(sorted(statuses) == [200, 201] for statuses in by_id.values()), by_id
    stats = requests.get(
        live_server.url + "/api/v1/events/stats", headers={"X-API-Key": key}, timeout=10
    ).json()
    assert stats["total"] == len(ids)


def test_a_second_server_on_a_taken_port_exits_instead_of_sharing_it(live_server_factory):
    """eventlet's SO_REUSEPORT default let two servers split one port's clients silently."""
    first = live_server_factory(mode="eventlet")
    second = subprocess.run(
        [sys.executable, "wsgi.py"],
        cwd=ROOT,
        env=first.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "Address already in use" in second.stderr
    assert "Traceback" not in second.stderr  # one line that says why
    assert requests.get(first.url + "/health", timeout=5).status_code == 200
