"""`flask --app wsgi webhooks …`: a delivery worker, and pruning the delivery log."""

from __future__ import annotations

import click
from flask import current_app

from .common import OperatorGroup

webhooks_cli = OperatorGroup("webhooks", help="Webhook delivery.")


@webhooks_cli.command("worker")
def run_worker() -> None:
    """Deliver webhooks in this process until interrupted.

    Run as many as you like, on any nodes sharing the database: they share the work
    without sending an attempt twice. Servers start a worker of their own unless started
    with WEBHOOK_WORKER=off. Ctrl+C stops it once what it has claimed is sent and
    recorded (up to WEBHOOK_TIMEOUT_S).
    """
    worker = current_app.extensions["webhook_worker"]
    worker.start()
    click.echo("Delivering webhooks; Ctrl+C stops.", err=True)
    try:
        worker.join()
    except KeyboardInterrupt:
        worker.finish()


@webhooks_cli.command("prune")
def prune() -> None:
    """Remove finished deliveries older than WEBHOOK_LOG_RETENTION_DAYS now."""
    removed = current_app.extensions["webhook_worker"].prune()
    click.echo(f"Removed {removed} deliveries.")
