"""`flask --app wsgi purge run`: one pass of the purge that servers run in the background."""

from __future__ import annotations

import click

from ..services.purge import run_purge
from .common import OperatorGroup

purge_cli = OperatorGroup("purge", help="Removing deleted tenants and events past retention.")


@purge_cli.command("run")
def run() -> None:
    """Remove deleted tenants' data and events past retention now, in bounded batches.

    Servers do the same every PURGE_INTERVAL_S; this is for PURGE_INTERVAL_S=0, or for
    not waiting. Safe beside running servers: each batch is a short transaction.
    """
    report = run_purge()
    removed = report.tenants_removed
    tenants = ", ".join(map(str, removed)) if removed else "none"
    click.echo(f"Tenants removed: {tenants}")
    click.echo(f"Events removed: {report.events_removed}")
