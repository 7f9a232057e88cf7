"""SQLite writers under eventlet take turns (ingest/__init__.py, _one_writer_at_a_time).

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


def test_a_writer_killed_mid_transaction_does_not_keep_the_turn(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "t.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.strip().endswith("written"), done.stderr[-2000:]
