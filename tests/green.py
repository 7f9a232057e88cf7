"""Scripts that run in an eventlet (monkey-patched) process of their own, as the server
and its webhook worker do, and measure whether other green threads kept running.

``PRELUDE`` patches, then defines ``start_ticking()``, a green thread that notes the
time every 5 ms, and ``longest_pause()``: the longest the process went without a tick
(the current moment counting as one), i.e. how long something held up the hub.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import time

    _ticks = []

    def start_ticking():
        def tick():
            while True:
                eventlet.sleep(0.005)
                _ticks.append(time.monotonic())

        _ticks.append(time.monotonic())  # from now: a hub held at once counts too
        return eventlet.spawn(tick)

    def longest_pause():
        ticks = [*_ticks, time.monotonic()]
        return max(b - a for a, b in zip(ticks, ticks[1:]))
    """
)


def run_green(script: str, *args: str, env: dict | None = None) -> str:
    """Run PRELUDE + ``script`` with ``args``; its last line of output (AssertionError
    with its stderr if it printed none)."""
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-2000:]
    return lines[-1]
