"""Reading request bodies: JSON documents and NDJSON batches, with errors a person can act on.

A body may be up to MAX_CONTENT_LENGTH (5 MiB by default), and parsing 5 MiB of tiny
JSON values costs ~0.3 s of CPU in one go: one tenant's request would hold up every
other request of the process (under eventlet they share one thread). So batches are
read one event at a time, each parse bounded by the size an event can have
(``EventLimits.max_json_bytes``), yielding between events (``CpuSlices``), and an
NDJSON body is read from the socket only up to the first line past the batch limit.
"""

from __future__ import annotations

import json
import re

from flask import request

from .auth import reconfirm
from .errors import ApiError, ValidationError
from .fairness import CpuSlices

NDJSON_TYPES = {
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
}

_READ_SIZE = 64 * 1024
_WHITESPACE = re.compile(r"[ \t\r\n]*")
# The one shape of a large JSON batch that is read event by event.
_BATCH_OPENING = re.compile(r'[ \t\r\n]*\{[ \t\r\n]*"events"[ \t\r\n]*:[ \t\r\n]*\[')
_BATCH_CLOSING = re.compile(r"[ \t\r\n]*\][ \t\r\n]*\}[ \t\r\n]*\Z")


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class BatchRejected(ValidationError):
    """A batch refused while reading; ``events_read`` still counts against the rate limit."""

    def __init__(self, message: str, events_read: int, details: object | None = None):
        super().__init__(message, details=details)
        self.events_read = events_read


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(text: str | bytes):
    """json.loads that refuses NaN/Infinity and survives absurd nesting."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


def _media_type() -> str:
    return (request.mimetype or "").lower()


def read_body() -> bytes:
    """The whole request body, sent with a Content-Length or chunked; 413 past the limit.

    Werkzeug refuses a Content-Length over MAX_CONTENT_LENGTH before reading anything,
    but a chunked body it silently cuts at the limit: one byte more from the server's
    own stream says whether the body went on.
    """
    body = request.get_data(cache=True)
    limit = request.max_content_length
    cut = request.content_length is None and len(body) >= limit
    if cut and request.environ["wsgi.input"].read(1):
        raise PayloadTooLarge(
            f"The request body is larger than the server accepts ({limit} bytes)."
        )
    return body


def _refuse_encoded_body() -> None:
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send the body uncompressed."
        )


def read_json_object(max_bytes: int | None = None) -> dict:
    """The request body as a JSON object, or a 400/413/415 error."""
    _refuse_encoded_body()
    if _media_type() != "application/json":
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    data = read_body()
    reconfirm()  # the body may have taken minutes to come
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge(f"An event is at most {max_bytes} bytes of JSON.")
    try:
        body = decode_json(data)
    except ValueError as error:
        raise ValidationError(f"The body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.")
    return body


def read_optional_json_object() -> dict:
    """As read_json_object, but no body at all (curl -X POST) means an empty object."""
    if not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    return read_json_object()


def _too_many(count: int, max_events: int, more: bool) -> BatchRejected:
    has = f"more than {max_events}" if more else str(count)
    return BatchRejected(
        f"A batch holds 1 to {max_events} events; this one has {has}.",
        events_read=count,
        details={"events": [f"Length must be between 1 and {max_events}."]},
    )


def _ndjson_lines(max_line_bytes: int):
    """(line number, line) for each line of the body, read as it arrives."""
    pending, line_number, slices = b"", 0, CpuSlices()
    stream = request.stream
    while True:
        chunk = stream.read(_READ_SIZE)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if not chunk:
            lines.append(pending)
        for line in lines:
            line_number += 1
            yield line_number, line
        slices.pause_if_due()
        if not chunk:
            return
        if len(pending) > max_line_bytes:
            yield line_number + 1, None  # too long to be an event: not worth reading


def _read_ndjson(max_events: int, max_line_bytes: int) -> list:
    items, errors, blank, slices = [], {}, 0, CpuSlices()
    for line_number, line in _ndjson_lines(max_line_bytes):
        if line is None or len(line) > max_line_bytes:
            raise BatchRejected(
                f"Line {line_number} is longer than {max_line_bytes} bytes, more than an "
                "event can be.",
                events_read=line_number,
            )
        if not line.strip():
            # Skipped, but not free: megabytes of newlines cost a second of CPU to split.
            blank += 1
            if blank > max_events:
                raise BatchRejected(
                    f"The NDJSON body has more than {max_events} blank lines.",
                    events_read=line_number,
                )
            continue
        if len(items) == max_events:
            raise _too_many(line_number, max_events, more=True)
        try:
            items.append(decode_json(line))
        except ValueError as error:
            errors[str(len(items))] = {"_line": [f"Line {line_number} is not valid JSON: {error}."]}
            items.append(None)
        slices.pause_if_due()
    if errors:
        raise BatchRejected(
            "Some lines of the NDJSON body are not valid JSON.",
            events_read=len(items) + blank,
            details=errors,
        )
    return items


def _decode_item(text: str, position: int, index: int, max_item_bytes: int):
    # The parse of one item is bounded: it only sees as much text as an event can have.
    window = text[position : position + max_item_bytes]
    try:
        return _DECODER.raw_decode(window)
    except RecursionError:
        error = "JSON is nested too deeply"
    except ValueError as failure:
        error = str(failure)
    limit = (
        f" (an event is at most {max_item_bytes} bytes of JSON)"
        if len(window) == max_item_bytes
        else ""
    )
    raise BatchRejected(
        f"Event {index} of the batch is not valid JSON{limit}: {error}.", events_read=index + 1
    )


def _read_large_json_batch(text: str, max_events: int, max_item_bytes: int) -> list:
    opening = _BATCH_OPENING.match(text)
    if opening is None:
        raise ValidationError(
            'A batch larger than one event must be exactly {"events": [...]}, or NDJSON.'
        )
    items, position, slices = [], opening.end(), CpuSlices()
    position = _WHITESPACE.match(text, position).end()
    if text.startswith("]", position):
        return items
    while True:
        if len(items) == max_events:
            raise _too_many(max_events + 1, max_events, more=True)
        item, length = _decode_item(text, position, len(items), max_item_bytes)
        items.append(item)
        position = _WHITESPACE.match(text, position + length).end()
        slices.pause_if_due()
        if text.startswith(",", position):
            position = _WHITESPACE.match(text, position + 1).end()
            continue
        if _BATCH_CLOSING.match(text, position):
            return items
        raise BatchRejected(
            f"The body is not valid JSON after event {len(items) - 1} of the batch.",
            events_read=len(items),
        )


def _read_json_batch(max_events: int, max_item_bytes: int) -> list:
    data = read_body()
    if len(data) > max_item_bytes:
        if _media_type() != "application/json":
            raise UnsupportedMediaType(
                "Send the body as JSON with 'Content-Type: application/json'."
            )
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ValidationError("The body is not valid UTF-8 JSON.") from None
        return _read_large_json_batch(text, max_events, max_item_bytes)
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
    return items


def read_batch_items(max_events: int, max_item_bytes: int) -> list:
    """The raw items of a batch, from ``{"events": [...]}`` or an NDJSON body."""
    _refuse_encoded_body()
    if _media_type() not in NDJSON_TYPES | {"application/json"}:
        raise UnsupportedMediaType(
            "Send a batch as JSON ('Content-Type: application/json') or as NDJSON "
            f"(one of {', '.join(sorted(NDJSON_TYPES))})."
        )
    if _media_type() in NDJSON_TYPES:
        items = _read_ndjson(max_events, max_item_bytes)
    else:
        items = _read_json_batch(max_events, max_item_bytes)
    if not 1 <= len(items) <= max_events:
        raise _too_many(len(items), max_events, more=False)
    return items
