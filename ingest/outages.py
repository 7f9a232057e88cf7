"""A dependency that may go away (Redis): when to try it again, and one log line each way."""

from __future__ import annotations

import logging
import time


class Outage:
    """The state of one dependency's outages, for code that carries on without it.

    After a failure the dependency is skipped for ``retry_seconds`` (``paused``) rather
    than waited on by every call. The first failure of an outage logs ``went`` with
    the error at ``went_level``; the first success after it logs ``came_back``.
    """

    def __init__(
        self,
        log: logging.Logger,
        went: str,
        came_back: str,
        went_level: int = logging.WARNING,
        retry_seconds: float = 1.0,
    ):
        self.log, self.went, self.came_back = log, went, came_back
        self.went_level, self.retry_seconds = went_level, retry_seconds
        self.degraded = False
        self._retry_at = 0.0

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._retry_at

    def failed(self, error: Exception) -> None:
        self._retry_at = time.monotonic() + self.retry_seconds
        if not self.degraded:
            self.log.log(self.went_level, self.went, error)
            self.degraded = True

    def succeeded(self) -> None:
        if self.degraded:
            self.log.warning(self.came_back)
            self.degraded = False
