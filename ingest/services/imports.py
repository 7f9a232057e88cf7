"""Importing events from NDJSON: each line checked alone, then stored as the batch API stores.

The checks are the API's (``event_schema``, ``decode_json``), but line by line: a bad
line is rejected with its number and the rest go on, where a batch request is
refused whole. The good lines go through the group commit in batches of up to
MAX_BATCH_EVENTS, so they are idempotent on their ids (a re-import stores nothing
twice) and reach webhooks and Socket.IO subscribers like any other events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import marshmallow
from flask import current_app

from ..payloads import decode_json
from ..validation import event_schema
from .ingestion import ingest_events
from .tenants import live_tenant

# What an export line has that a client does not send: the server sets it on arrival.
SERVER_FIELDS = ("received_at",)
# How much of an over-long line is read at a time while skipping it.
_SKIP_BYTES = 64 * 1024


@dataclass
class ImportReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    # Lines dealt with (stored, duplicates, rejected or blank): all of them once done.
    lines_done: int = 0


def ndjson_lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) for each line of ``stream``; None for a line over the limit.

    Never holds more than ``max_line_bytes`` of one line: a longer one is skipped
    to its end, not read into memory.
    """
    number = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while (rest := stream.readline(_SKIP_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line


def _reason(messages, path: str = "") -> list[str]:
    """marshmallow's messages as "field: message" lines."""
    if isinstance(messages, dict):
        found = []
        for key, value in messages.items():
            name = "" if key == "_schema" else f"{path}.{key}" if path else str(key)
            found.extend(_reason(value, name))
        return found
    if isinstance(messages, list):
        return [line for message in messages for line in _reason(message, path)]
    return [f"{path}: {messages}" if path else str(messages)]


def parse_event(line: bytes, schema: marshmallow.Schema) -> tuple[dict | None, str | None]:
    """One NDJSON line as a valid event, or why it is not one."""
    try:
        item = decode_json(line)
    except ValueError as error:
        return None, f"not valid JSON: {error}"
    if isinstance(item, dict):
        item = {name: value for name, value in item.items() if name not in SERVER_FIELDS}
    try:
        return schema.load(item), None
    except marshmallow.ValidationError as error:
        return None, "; ".join(_reason(error.messages))


def import_ndjson(
    tenant_id: int,
    stream: BinaryIO,
    on_rejected: Callable[[int, str], None],
    on_progress: Callable[[ImportReport], None] = lambda _report: None,
    report: ImportReport | None = None,
) -> ImportReport:
    """Store the events of an NDJSON stream for a tenant; returns the counts.

    ``on_rejected(line number, reason)`` hears of each bad line, ``on_progress`` of
    each stored batch. ``report`` is filled as it goes, so a caller holding it knows
    how far an import got that stopped on an error (the database away, the tenant
    deleted meanwhile). Lines without an ``id`` get a new one, as in the API: those
    are stored again by a second import.
    """
    live_tenant(tenant_id)
    report = report if report is not None else ImportReport()
    schema = event_schema()
    max_line_bytes = schema.limits.max_json_bytes
    batch_size = current_app.config["MAX_BATCH_EVENTS"]
    batch: list[dict] = []

    def store(last_line: int) -> None:
        result = ingest_events(tenant_id, batch)
        report.accepted += result.accepted
        report.duplicates += result.duplicates
        report.lines_done = last_line
        batch.clear()
        on_progress(report)

    number = 0
    for number, line in ndjson_lines(stream, max_line_bytes):
        if line is None:
            reason = f"longer than {max_line_bytes} bytes, more than an event can be"
        elif not line.strip():
            continue
        else:
            event, reason = parse_event(line, schema)
        if reason is not None:
            report.rejected += 1
            on_rejected(number, reason)
            continue
        batch.append(event)
        if len(batch) == batch_size:
            store(number)
    if batch:
        store(number)
    report.lines_done = number
    return report
