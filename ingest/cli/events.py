"""`flask --app wsgi events …`: export a tenant's events, import them, follow them live."""

from __future__ import annotations

import click
from flask import current_app
from sqlalchemy.exc import DBAPIError

from ..errors import ApiError
from ..schemas import EventQuerySchema
from ..services import tenants
from ..services.events import export_events
from ..services.imports import ImportReport, import_ndjson
from ..validation import load
from .common import (
    TENANT_ID,
    OperatorGroup,
    Progress,
    ndjson_line,
    reader_left,
    server_url,
    stdout_bytes,
)
from .tail import Tail

events_cli = OperatorGroup("events", help="A tenant's events: export, import, tail.")

tenant_option = click.option(
    "--tenant", "tenant_id", type=TENANT_ID, required=True, help="The tenant's id."
)
types_option = click.option(
    "--type", "types", multiple=True, help="Only events of this type; repeat it for several."
)


def _filters(types: tuple[str, ...], since: str | None = None, until: str | None = None) -> dict:
    """The options checked as the API checks GET /events's type, since and until."""
    given = {"type": list(types), "since": since, "until": until}
    return load(EventQuerySchema(), {name: value for name, value in given.items() if value})


@events_cli.command("export")
@tenant_option
@click.option(
    "--since",
    metavar="ISO",
    help="Only events whose timestamp is at or after this ISO 8601 date-time "
    "(e.g. 2026-11-30T00:00:00Z).",
)
@click.option("--until", metavar="ISO", help="Only events whose timestamp is before this one.")
@types_option
def export(tenant_id: int, since: str | None, until: str | None, types: tuple[str, ...]) -> None:
    """Write a tenant's events to stdout as NDJSON, in storage order (first stored first).

    One line per event in the API's format (id, type, metadata, timestamp,
    received_at): `events import` takes it back. Read in batches of EXPORT_BATCH,
    written as they come, so memory stays flat however many there are. Events stored
    while it runs may or may not be included.
    """
    filters = _filters(types, since, until)
    tenants.get_tenant(tenant_id, tenants.ADMIN)
    out, progress, count = stdout_bytes(), Progress(), 0
    pages = export_events(
        tenant_id,
        filters["types"],
        filters.get("since"),
        filters.get("until"),
        current_app.config["EXPORT_BATCH"],
    )
    try:
        for page in pages:
            out.write(b"".join(ndjson_line(event) for event in page))
            count += len(page)
            progress.update(f"{count} events exported")
        out.flush()
    except BrokenPipeError:
        reader_left()
    if progress.shown:
        progress.note(f"{count} events exported.")


def _summary(report: ImportReport) -> str:
    return f"accepted {report.accepted}, duplicates {report.duplicates}, rejected {report.rejected}"


@events_cli.command("import")
@tenant_option
@click.argument("source", metavar="FILE|-", type=click.File("rb"))
def import_(tenant_id: int, source) -> None:
    """Store the events of an NDJSON file (- for stdin) for a tenant.

    Each line is checked as the batch API checks an event, but alone: a bad line is
    rejected (its number and why on stderr) and the rest go on. Good lines are stored
    as the batch API stores them, MAX_BATCH_EVENTS at a time: ids, timestamps and
    metadata are kept, an id the tenant already has counts as a duplicate and is not
    stored again (so importing twice is harmless), and subscribers and webhooks get
    the new events like any others. Lines without an id get a new one, as in the API.
    `events export` writes this format (its received_at is set anew on import).

    Ends with "accepted N, duplicates N, rejected N"; the exit status is 1 if any
    line was rejected.
    """
    progress = Progress()
    report = ImportReport()

    def rejected(line: int, reason: str) -> None:
        progress.note(f"line {line}: {reason}")

    def stored(report: ImportReport) -> None:
        progress.update(f"line {report.lines_done}: {_summary(report)}")

    try:
        import_ndjson(tenant_id, source, rejected, stored, report)
    except (ApiError, DBAPIError):
        if report != ImportReport():  # it had begun: say how far it got
            progress.note(f"Stopped after line {report.lines_done}: {_summary(report)}")
        raise
    progress.clear()
    click.echo(_summary(report))
    if report.rejected:
        raise click.exceptions.Exit(1)


@events_cli.command("tail")
@tenant_option
@types_option
@click.option(
    "--url",
    help="The server to follow (default: this configuration's HOST and PORT, "
    "http://127.0.0.1:5000 unless they are set).",
)
def tail(tenant_id: int, types: tuple[str, ...], url: str | None) -> None:
    """Print a tenant's events as NDJSON as they are stored, until Ctrl+C.

    Connects to a running server over Socket.IO, as any subscriber does: with the
    servers sharing REDIS_URL, it sees what every node stores. It signs in with a
    tenant token made from SECRET_KEY, so run it with the servers' configuration.
    After a lost connection it reconnects and prints what it missed.
    """
    filters = _filters(types)
    tenants.live_tenant(tenant_id)
    app = current_app._get_current_object()
    Tail(app, tenant_id, filters["types"], url or server_url(app.config), stdout_bytes()).run()
