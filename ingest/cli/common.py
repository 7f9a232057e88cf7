"""What every command group shares: errors as messages, tenant ids, NDJSON out, progress."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from ..errors import ApiError, database_unavailable

# Tenant ids are 32-bit integers in the database (as the API's routes say).
TENANT_ID = click.IntRange(1, 2**31 - 1)


def describe(error: ApiError) -> str:
    """An API error as one line: its message, then what its details say of each field."""
    details = error.details
    if isinstance(details, dict):
        parts = [
            f"{field}: {' '.join(map(str, problems)) if isinstance(problems, list) else problems}"
            for field, problems in details.items()
        ]
        return f"{error.message} ({'; '.join(parts)})" if parts else error.message
    return error.message


class OperatorCommand(click.Command):
    """A command whose service errors end it with a message and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ApiError as error:
            raise click.ClickException(describe(error)) from None
        except DBAPIError as error:
            if not database_unavailable(error):
                raise
            # Unreachable, refused, or not migrated yet ("no such table"): the driver says which.
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            raise click.ClickException(f"Database error: {reason}") from None


class OperatorGroup(AppGroup):
    """A group of OperatorCommands (`flask --app wsgi <group> …`), run in the app context."""

    command_class = OperatorCommand


def server_url(config) -> str:
    """The server this configuration runs (`python wsgi.py` listens at HOST:PORT)."""
    host = config["HOST"]
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - listening everywhere: reach it locally
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config['PORT']}"


def when(moment: datetime | None) -> str:
    """A moment for people: UTC, to the second."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ndjson_line(event: dict) -> bytes:
    """One event as a line of NDJSON: compact, UTF-8."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def reader_left() -> None:
    """stdout's reader went away (`| head`): send what is left nowhere, as Python's docs
    advise, and exit with status 1."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)


def stdout_bytes():
    """stdout for bytes: NDJSON is UTF-8 whatever the terminal's locale."""
    return sys.stdout.buffer


class Progress:
    """A counter redrawn in place on stderr, and only when stderr is a terminal.

    Redrawn at most ten times a second: drawing costs more than a batch of events.
    """

    INTERVAL = 0.1

    def __init__(self):
        self.shown = sys.stderr.isatty()
        self._drawn_at = 0.0
        self._drawn = False

    def update(self, text: str, force: bool = False) -> None:
        if not self.shown or not (force or time.monotonic() - self._drawn_at >= self.INTERVAL):
            return
        click.echo(f"\r\x1b[K{text}", err=True, nl=False)
        self._drawn_at, self._drawn = time.monotonic(), True

    def note(self, text: str) -> None:
        """A line that stays (a rejected line, say), whether or not progress is shown."""
        self.clear()
        click.echo(text, err=True)

    def clear(self) -> None:
        if self._drawn:
            click.echo("\r\x1b[K", err=True, nl=False)
            self._drawn = False
