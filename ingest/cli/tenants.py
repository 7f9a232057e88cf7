"""`flask --app wsgi tenants …`: create, list, rotate keys, disable, enable, delete."""

from __future__ import annotations

import shlex

import click
from flask import current_app

from ..auth import now
from ..schemas import KeyInSchema, TenantInSchema
from ..services import tenants as service
from ..validation import load
from .common import TENANT_ID, OperatorGroup, server_url, when

tenants_cli = OperatorGroup("tenants", help="Tenants and their API keys.")


@tenants_cli.command("create")
@click.argument("name")
@click.option(
    "--rate-limit",
    type=int,
    help="Events per minute this tenant may send (default: RATELIMIT_DEFAULT).",
)
def create(name: str, rate_limit: int | None) -> None:
    """Create a tenant named NAME; print its id and its API key, shown this once."""
    fields = load(TenantInSchema(), {"name": name, "rate_limit": rate_limit})
    created = service.create_tenant(fields["name"], fields.get("rate_limit"))
    tenant = created.tenant
    event = shlex.quote('{"type": "hello", "metadata": {"from": "curl"}}')
    click.echo(f"Created tenant {tenant.id} ({tenant.name}).")
    click.echo("API key, shown this once (only its hash is kept):")
    click.echo(f"  {created.api_key}")
    click.echo("Post a first event:")
    click.echo(
        f"  curl -s {server_url(current_app.config)}/api/v1/events "
        f"-H 'X-API-Key: {created.api_key}' -H 'Content-Type: application/json' -d {event}"
    )


def _rate_limit(tenant) -> str:
    return f"{tenant.rate_limit}/minute" if tenant.rate_limit else "default"


def _retention(tenant) -> str:
    # As the purge reads it (services/purge.py): a tenant's own, else the server's default.
    days = tenant.retention_days or current_app.config["DEFAULT_RETENTION_DAYS"]
    if not days:
        return "forever"
    return f"{days} days" + ("" if tenant.retention_days else " (default)")


@tenants_cli.command("list")
def list_() -> None:
    """List every tenant: id, name, status, rate limit, retention, created."""
    header = ("ID", "NAME", "STATUS", "RATE LIMIT", "RETENTION", "CREATED")
    rows = [
        (
            str(tenant.id),
            tenant.name,
            tenant.status,
            _rate_limit(tenant),
            _retention(tenant),
            when(tenant.created_at),
        )
        for tenant in service.list_tenants()
    ]
    if not rows:
        click.echo("No tenants yet: `flask --app wsgi tenants create NAME` makes one.")
        return
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@tenants_cli.command("rotate-key")
@click.argument("tenant_id", metavar="ID", type=TENANT_ID)
@click.option(
    "--grace",
    "grace_seconds",
    type=int,
    help="Seconds the tenant's other keys keep working (default: KEY_ROTATION_GRACE_S, "
    "a day); 0 ends them now.",
)
def rotate_key(tenant_id: int, grace_seconds: int | None) -> None:
    """Give tenant ID a new API key, shown this once; its other keys expire after --grace."""
    if grace_seconds is None:
        grace_seconds = current_app.config["KEY_ROTATION_GRACE_S"]
    else:
        grace_seconds = load(KeyInSchema(), {"grace_seconds": grace_seconds})["grace_seconds"]
    created = service.create_key(tenant_id, service.ADMIN, grace_seconds)
    click.echo(f"New API key for tenant {tenant_id}, shown this once:")
    click.echo(f"  {created.api_key}")
    moment = now()
    others = [
        key
        for key in service.list_keys(tenant_id, service.ADMIN)
        if key.id != created.key.id and key.revoked_at is None
    ]
    still_usable = [key for key in others if key.usable_at(moment)]
    if not still_usable:
        click.echo("No other key works any more.")
        return
    click.echo("The other keys work until:")
    for key in still_usable:
        click.echo(f"  {key.prefix}…  {when(key.expires_at)}")


def _set_disabled(tenant_id: int, disabled: bool) -> None:
    tenant = service.update_tenant(tenant_id, {"disabled": disabled})
    if disabled:
        click.echo(
            f"Disabled tenant {tenant.id} ({tenant.name}): its keys and tokens are refused "
            "(403 tenant_disabled), its sockets closed, its webhooks held; its data stays."
        )
    else:
        click.echo(f"Enabled tenant {tenant.id} ({tenant.name}).")


@tenants_cli.command("disable")
@click.argument("tenant_id", metavar="ID", type=TENANT_ID)
def disable(tenant_id: int) -> None:
    """Switch tenant ID off: its credentials are refused until it is enabled again."""
    _set_disabled(tenant_id, True)


@tenants_cli.command("enable")
@click.argument("tenant_id", metavar="ID", type=TENANT_ID)
def enable(tenant_id: int) -> None:
    """Switch tenant ID back on."""
    _set_disabled(tenant_id, False)


@tenants_cli.command("delete")
@click.argument("tenant_id", metavar="ID", type=TENANT_ID)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(tenant_id: int, yes: bool) -> None:
    """Delete tenant ID with its keys, events and webhooks.

    Its credentials are refused at once; its data is removed in the background by
    the servers' purge (every PURGE_INTERVAL_S), or now by `flask --app wsgi purge run`.
    """
    tenant = service.get_tenant(tenant_id, service.ADMIN)
    if not yes:
        click.confirm(
            f"Delete tenant {tenant.id} ({tenant.name}) and all its events? This cannot be undone.",
            abort=True,
        )
    service.delete_tenant(tenant_id)
    click.echo(
        f"Deleting tenant {tenant_id}: its credentials are refused now; its data is purged in "
        "the background, or now with `flask --app wsgi purge run`."
    )
