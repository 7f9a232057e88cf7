"""Reading request bodies: JSON documents and NDJSON batches, with errors a person can act on."""

from __future__ import annotations

import json

from flask import request

from .errors import ApiError, ValidationError

NDJSON_TYPES = {
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
}


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def decode_json(text: str | bytes):
    """json.loads that refuses NaN/Infinity and survives absurd nesting."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


def _media_type() -> str:
    return (request.mimetype or "").lower()


def read_json_object() -> dict:
    """The request body as a JSON object, or a 400/413/415 error."""
    if _media_type() != "application/json":
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    try:
        body = decode_json(request.get_data(cache=True))
    except ValueError as error:
        raise ValidationError(f"The body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.")
    return body


def _read_ndjson() -> list:
    items, errors = [], {}
    for line_number, line in enumerate(request.get_data(cache=True).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(decode_json(line))
        except ValueError as error:
            errors[str(len(items))] = {"_line": [f"Line {line_number} is not valid JSON: {error}."]}
            items.append(None)
    if errors:
        raise ValidationError("Some lines of the NDJSON body are not valid JSON.", details=errors)
    return items


def read_batch_items(max_events: int) -> list:
    """The raw items of a batch, from ``{"events": [...]}`` or an NDJSON body."""
    if _media_type() in NDJSON_TYPES:
        items = _read_ndjson()
    else:
        body = read_json_object()
        unknown = sorted(set(body) - {"events"})
        if unknown:
            raise ValidationError(
                "Unknown fields in the batch.",
                details={name: ["Unknown field."] for name in unknown},
            )
        items = body.get("events")
        if not isinstance(items, list):
            raise ValidationError(
                "The batch needs an 'events' list.", details={"events": ["Must be a list."]}
            )
    if not 1 <= len(items) <= max_events:
        raise ValidationError(
            f"A batch holds 1 to {max_events} events; this one has {len(items)}.",
            details={"events": [f"Length must be between 1 and {max_events}."]},
        )
    return items
