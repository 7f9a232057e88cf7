"""SQLite writers under eventlet take turns (ingest/__init__.py, _one_writer_at_a_time),
and wait for other processes' writers without freezing their own (_begin_immediately).

Run in a subprocess: the turn only exists in a monkey-patched (eventlet) process.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import sys
    from sqlalchemy import text
    from ingest import create_app
    from ingest.extensions import db

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + sys.argv[1],
        "ADMIN_TOKEN": "a" * 32, "SECRET_KEY": "s" * 32,
    })
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (n INTEGER)"))

        def interrupted_write():
            with db.engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (1)"))
                eventlet.sleep(10)  # killed here, its transaction open

        writer = eventlet.spawn(interrupted_write)
        eventlet.sleep(0.1)
        writer.kill()
        with eventlet.Timeout(5, False):
            with db.engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (2)"))
            print("written")
    """
)


def _run(script: str, tmp_path) -> subprocess.CompletedProcess:
    """The script in an eventlet process of its own, on a database file in tmp_path."""
    return subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "t.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


def test_a_writer_killed_mid_transaction_does_not_keep_the_turn(tmp_path):
    done = _run(SCRIPT, tmp_path)
    assert done.stdout.strip().endswith("written"), done.stderr[-2000:]


OTHER_PROCESS_SCRIPT = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import subprocess, sys, time
    from sqlalchemy import text
    from ingest import create_app
    from ingest.extensions import db

    path = sys.argv[1]
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + path,
        "ADMIN_TOKEN": "a" * 32, "SECRET_KEY": "s" * 32,
    })
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (n INTEGER)"))
        # Another process (as the webhook worker beside a server) holds the write lock.
        holder = subprocess.Popen(
            [sys.executable, "-c", (
                "import sqlite3, sys, time\\n"
                "c = sqlite3.connect(sys.argv[1], isolation_level=None)\\n"
                "c.execute('BEGIN IMMEDIATE'); print('held', flush=True)\\n"
                "time.sleep(1.5); c.execute('COMMIT')\\n"
            ), path],
            stdout=subprocess.PIPE, text=True,
        )
        assert holder.stdout.readline().strip() == "held"
        ticks = [time.monotonic()]

        def tick():
            while True:
                eventlet.sleep(0.01)
                ticks.append(time.monotonic())

        ticker = eventlet.spawn(tick)
        started = time.monotonic()
        with db.engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
        waited = time.monotonic() - started
        ticks.append(time.monotonic())  # the last stretch counts too
        ticker.kill()
        holder.wait()
        gap = max(b - a for a, b in zip(ticks, ticks[1:]))
        print(f"waited {waited:.2f} gap {gap:.3f}")
    """
)


def test_waiting_for_another_process_s_writer_does_not_freeze_the_process(tmp_path):
    """The write waits for the other process's lock (1.5 s) while every other greenlet
    goes on: in SQLite's busy handler, a C sleep, the whole process stood still."""
    done = _run(OTHER_PROCESS_SCRIPT, tmp_path)
    last = done.stdout.strip().splitlines()[-1:] or [""]
    assert last[0].startswith("waited"), done.stderr[-2000:]
    _, waited, _, gap = last[0].split()
    assert float(waited) >= 1.0  # it did wait for the lock
    assert float(gap) < 0.5  # and the process went on meanwhile
