"""Operators' commands, under Flask's own CLI: `flask --app wsgi <group> <command>`.

One group per noun, one module per group; each command parses its options, calls the
same service functions as the API and prints the outcome. Errors end a command with a
message and exit status 1 (common.OperatorCommand).
"""

from __future__ import annotations

from flask import Flask

from .events import events_cli
from .purge import purge_cli
from .tenants import tenants_cli
from .webhooks import webhooks_cli


def init_app(app: Flask) -> None:
    for group in (tenants_cli, events_cli, webhooks_cli, purge_cli):
        app.cli.add_command(group)
