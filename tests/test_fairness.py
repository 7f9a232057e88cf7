"""Long loops over one request's body yield to other requests (ingest/fairness.py).

Run under a real eventlet hub in a subprocess: a greenlet that counts how often it
gets to run while a big batch is parsed and validated. Without yielding it would not
run at all until the batch is done.
"""

import subprocess
import sys
import textwrap

from tests.e2e.server import ROOT

PROGRAM = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import json
    from ingest.payloads import _read_large_json_batch
    from ingest.schemas import EventInSchema
    from ingest.validation import load_each

    runs = []

    def neighbour():
        while True:
            runs.append(1)
            eventlet.sleep(0)

    eventlet.spawn(neighbour)
    eventlet.sleep(0)
    # ~5 MiB of tiny JSON values: the costliest body to parse and check per byte.
    items = [{"type": "a", "metadata": {"a": [[]] * 1600}} for _ in range(200)]
    text = json.dumps({"events": items})
    start = len(runs)
    parsed = _read_large_json_batch(text, 1000, EventInSchema().limits.max_json_bytes)
    during_parse = len(runs) - start
    start = len(runs)
    load_each(EventInSchema(), parsed, message="invalid")
    print(during_parse, len(runs) - start)
    """
)


def test_parsing_and_validating_a_big_batch_let_other_greenlets_run():
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    during_parse, during_validation = map(int, result.stdout.split())
    # Each phase takes hundreds of milliseconds; the neighbour runs every few.
    assert during_parse >= 5
    assert during_validation >= 5
