"""SQLite writers under eventlet take turns (ingest/__init__.py, _one_writer_at_a_time),
and wait for other processes' writers without freezing their own (_begin_immediately).

Run in a subprocess (tests/green.py): the turn only exists in a monkey-patched process.
"""

from tests.green import run_green

APP = """
import subprocess, sys
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
"""

KILLED_WRITER = """
with app.app_context():
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

# Another process (as the webhook worker beside a server) holds the write lock 1.5 s.
OTHER_PROCESS_WRITER = """
with app.app_context():
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
    ticker = start_ticking()
    started = time.monotonic()
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
    waited = time.monotonic() - started
    gap = longest_pause()
    ticker.kill()
    holder.wait()
    print(f"waited {waited:.2f} gap {gap:.3f}")
"""


def _run(script: str, tmp_path) -> str:
    env = {"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return run_green(APP + script, str(tmp_path / "t.db"), env=env)


def test_a_writer_killed_mid_transaction_does_not_keep_the_turn(tmp_path):
    assert _run(KILLED_WRITER, tmp_path) == "written"


def test_waiting_for_another_process_s_writer_does_not_freeze_the_process(tmp_path):
    """The write waits for the other process's lock (1.5 s) while every other greenlet
    goes on: in SQLite's busy handler, a C sleep, the whole process stood still."""
    _, waited, _, gap = _run(OTHER_PROCESS_WRITER, tmp_path).split()
    assert float(waited) >= 1.0  # it did wait for the lock
    assert float(gap) < 0.5  # and the process went on meanwhile
