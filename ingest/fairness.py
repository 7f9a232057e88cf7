"""Sharing the CPU: long loops over one request's data yield to other requests."""

from __future__ import annotations

import time

# Under eventlet every request of a process shares one thread; a loop that keeps it for
# longer than this delays every other tenant's requests (and Socket.IO pings) by as much.
CPU_SLICE_SECONDS = 0.005


class CpuSlices:
    """Call ``pause_if_due()`` inside a long loop: it yields once per slice of CPU time.

    ``time.sleep(0)`` is eventlet's cooperative yield when the process is monkey-patched,
    and a GIL release in threading mode.
    """

    def __init__(self, slice_seconds: float = CPU_SLICE_SECONDS):
        self.slice_seconds = slice_seconds
        self._until = time.perf_counter() + slice_seconds

    def pause_if_due(self) -> None:
        now = time.perf_counter()
        if now >= self._until:
            time.sleep(0)
            self._until = time.perf_counter() + self.slice_seconds
