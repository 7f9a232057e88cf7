"""Marshmallow schemas: the one description of each resource's shape, in and out."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from .models import utcnow


def _name_pattern(max_length: int) -> re.Pattern:
    """1 to ``max_length`` characters from A-Z, a-z, 0-9 and _ . : -

    One regular expression checks both the characters and the length (one validator
    call instead of two, on every event). ``\\Z``, not ``$``: ``$`` also matches
    before a trailing newline, which let "page.view\\n" through.
    """
    return re.compile(rf"[A-Za-z0-9_.:-]{{1,{max_length}}}\Z")


def _name(pattern: re.Pattern, max_length: int) -> validate.Regexp:
    return validate.Regexp(
        pattern, error=f"Use 1 to {max_length} characters from A-Z, a-z, 0-9 and _ . : -"
    )


# Every event id, client-chosen or generated (evt_ + URL-safe base64), matches this.
EVENT_ID = _name_pattern(128)
EVENT_TYPE = _name_pattern(100)


@dataclass(frozen=True)
class EventLimits:
    """Bounds on one event, from the app's configuration."""

    max_metadata_bytes: int = 64 * 1024
    max_metadata_depth: int = 32
    max_future_skew: timedelta = timedelta(hours=1)

    @property
    def max_json_bytes(self) -> int:
        """The most JSON text one event can take (a body, an NDJSON line, a batch item).

        Four times the metadata limit: room for spaces after separators and for
        \\uXXXX escapes (6 bytes for at most 3 of UTF-8), plus the other fields.
        Parsing one item never has to look further than this.
        """
        return 4 * self.max_metadata_bytes + 4096

    @classmethod
    def from_config(cls, config) -> EventLimits:
        return cls(
            max_metadata_bytes=config["MAX_METADATA_BYTES"],
            max_metadata_depth=config["MAX_METADATA_DEPTH"],
            max_future_skew=timedelta(seconds=config["MAX_FUTURE_SKEW_SECONDS"]),
        )


# NUL: PostgreSQL's text and JSONB refuse it. Lone UTF-16 surrogates ("\\ud800" in JSON
# text, which json.loads turns into a str that no UTF-8 encoder accepts): every database
# driver, the Socket.IO encoder and most clients fail on them.
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")

# JSON numbers every client decodes exactly (JavaScript's BigInt, Go's int64, Java's long,
# msgpack): the Python Socket.IO client dropped events with larger ones.
MAX_JSON_INTEGER = 2**63 - 1


def check_text(value: str) -> None:
    """Refuse text no database, driver or client handles: NUL bytes and lone surrogates."""
    found = _UNSTORABLE_CHARACTER.search(value)
    if found is None:
        return
    if found.group() == "\x00":
        raise ValidationError("NUL bytes are not allowed.")
    raise ValidationError(
        "Lone UTF-16 surrogates (such as \\ud800 without its pair) are not valid text."
    )


def check_json_document(value, max_depth: int) -> int:
    """Reject what JSON columns and clients can't carry faithfully.

    NUL bytes, lone surrogates, NaN/Infinity, integers beyond 64 bits, deep nesting.

    Returns an upper bound of the compact UTF-8 serialisation's size, so that the
    exact (costlier) size only needs computing for documents near the limit.
    """
    bound, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise ValidationError(f"Nesting is deeper than {max_depth} levels.")
        if isinstance(node, dict):
            bound += 2
            for key, child in node.items():
                check_text(key)
                bound += 4 + 6 * len(key)  # quotes, colon, comma; \uXXXX is the worst char
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            bound += 2 + len(node)
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            check_text(node)
            bound += 2 + 6 * len(node)
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValidationError("NaN and Infinity are not valid JSON numbers.")
            bound += 32
        elif isinstance(node, int) and not isinstance(node, bool):
            if not -MAX_JSON_INTEGER <= node <= MAX_JSON_INTEGER:
                raise ValidationError(
                    f"Integers must lie within ±{MAX_JSON_INTEGER} (64 bits); send larger "
                    "numbers as strings."
                )
            bound += len(str(node))
        else:
            bound += 5  # true, false, null
    return bound


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 date-time with a timezone, handed on in UTC.

    Its UTC value must lie in years 1 to 9999: "0001-01-01T00:00:00+01:00" parses, but
    is in year 0 in UTC, which no datetime (nor the database) can hold.
    """

    default_error_messages = {
        "invalid": "Not a valid ISO 8601 date-time (e.g. 2026-11-30T12:00:00Z).",
        "invalid_awareness": "Add a timezone: end the date-time with Z (UTC) or an offset "
        "like +02:00.",
        "out_of_range": "The date-time in UTC falls outside the years 1 to 9999.",
    }

    def __init__(self, **kwargs):
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            check_text(value)
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise self.make_error("out_of_range") from None


class PlainText(fields.String):
    """A string without NUL bytes or lone surrogates."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        check_text(text)
        return text


class JsonBoolean(fields.Boolean):
    """true or false in JSON, nothing else: "false" or 0 is a mistake to report, not guess at."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class _StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class EventInSchema(_StrictSchema):
    """An event as a client posts it."""

    id = fields.String(validate=_name(EVENT_ID, 128))
    type = fields.String(required=True, validate=_name(EVENT_TYPE, 100))
    # No keys=fields.String(): JSON object keys are strings already, and deserialising
    # each key through a field was ~3% of an ingest request.
    metadata = fields.Dict(load_default=dict)
    timestamp = UtcDateTime()

    def __init__(self, limits: EventLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or EventLimits()

    @validates("metadata")
    def _check_metadata(self, value: dict, **_) -> None:
        bound = check_json_document(value, self.limits.max_metadata_depth)
        if bound <= self.limits.max_metadata_bytes:
            return
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.limits.max_metadata_bytes:
            raise ValidationError(
                f"Metadata is {size} bytes serialised; the limit is "
                f"{self.limits.max_metadata_bytes}."
            )

    @validates("timestamp")
    def _check_timestamp(self, value: datetime, **_) -> None:
        if value - datetime.now(UTC) > self.limits.max_future_skew:
            raise ValidationError(
                "Timestamp is more than "
                f"{int(self.limits.max_future_skew.total_seconds())} s in the future."
            )


def event_json(event) -> dict:
    """A stored event as the API shows it (REST and Socket.IO alike).

    Written by hand rather than as a marshmallow schema: it runs for every event
    ingested and published, where a schema dump costs more than the insert.
    ``event`` is an Event, or a row as inserted (keyed by column name).
    """
    if not isinstance(event, dict):
        event = {
            "event_id": event.event_id,
            "type": event.type,
            "metadata": event.data,
            "timestamp": event.timestamp,
            "received_at": event.received_at,
        }
    return {
        "id": event["event_id"],
        "type": event["type"],
        "metadata": event["metadata"],
        "timestamp": event["timestamp"].astimezone(UTC).isoformat(),
        "received_at": event["received_at"].astimezone(UTC).isoformat(),
    }


class TenantInSchema(_StrictSchema):
    name = PlainText(required=True, validate=validate.Length(min=1, max=100))
    rate_limit = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=10_000_000),
        metadata={"description": "events per minute; null = the server default"},
    )


class TenantPatchSchema(TenantInSchema):
    name = PlainText(validate=validate.Length(min=1, max=100))
    disabled = JsonBoolean()
    retention_days = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=36_500),
        metadata={"description": "events older than this are purged; null = keep forever"},
    )

    @validates_schema
    def _something(self, data, **_kwargs):
        if not data:
            raise ValidationError(
                "Send at least one of name, rate_limit, disabled, retention_days."
            )


class TenantOutSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    rate_limit = fields.Integer(allow_none=True)
    created_at = fields.DateTime(format="iso")
    disabled = fields.Boolean()
    retention_days = fields.Integer(allow_none=True)
    status = fields.String(metadata={"description": "active, disabled or deleting"})


class KeyInSchema(_StrictSchema):
    grace_seconds = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=365 * 86400),
        metadata={"description": "how long the tenant's other keys keep working"},
    )


class KeyOutSchema(Schema):
    prefix = fields.String()
    created_at = fields.DateTime(format="iso")
    last_used_at = fields.DateTime(format="iso", allow_none=True)
    expires_at = fields.DateTime(format="iso", allow_none=True)
    revoked = fields.Function(lambda key: key.revoked_at is not None)
    status = fields.Function(
        lambda key: key.status_at(utcnow()),
        metadata={"description": "active, expiring (in a rotation's grace), expired or revoked"},
    )


class TimeRangeSchema(_StrictSchema):
    since = UtcDateTime()
    until = UtcDateTime()

    @validates_schema
    def _check_order(self, data: dict, **_) -> None:
        if "since" in data and "until" in data and data["since"] >= data["until"]:
            raise ValidationError("since must be earlier than until.", field_name="until")


class EventQuerySchema(TimeRangeSchema):
    types = fields.List(
        PlainText(validate=validate.Length(min=1, max=100)),
        data_key="type",
        load_default=list,
    )
    q = PlainText(validate=validate.Length(min=1, max=200))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    cursor = PlainText(validate=validate.Length(min=1, max=200))


tenant_out = TenantOutSchema()
key_out = KeyOutSchema()


class TypeCountSchema(Schema):
    type = fields.String()
    count = fields.Integer()


class StatsOutSchema(Schema):
    total = fields.Integer()
    by_type = fields.List(fields.Nested(TypeCountSchema))
    first_event_at = fields.DateTime(format="iso", allow_none=True)
    last_event_at = fields.DateTime(format="iso", allow_none=True)


class TimeseriesQuerySchema(TimeRangeSchema):
    interval = fields.String(load_default="minute", validate=validate.OneOf(["minute", "hour"]))


class BucketSchema(Schema):
    start = fields.DateTime(format="iso")
    count = fields.Integer()


# --- webhooks ----------------------------------------------------------------------------------


class WebhookInSchema(_StrictSchema):
    url = PlainText(required=True, validate=validate.Length(min=1, max=2048))
    types = fields.List(
        fields.String(validate=_name(EVENT_TYPE, 100)),
        load_default=list,
        validate=validate.Length(max=100),
        metadata={"description": "event types delivered; omitted or [] = every type"},
    )
    description = PlainText(load_default="", validate=validate.Length(max=500))


class WebhookPatchSchema(_StrictSchema):
    url = PlainText(validate=validate.Length(min=1, max=2048))
    types = fields.List(
        fields.String(validate=_name(EVENT_TYPE, 100)), validate=validate.Length(max=100)
    )
    description = PlainText(validate=validate.Length(max=500))
    enabled = JsonBoolean()


class WebhookOutSchema(Schema):
    id = fields.String(attribute="public_id")
    url = fields.String()
    types = fields.List(fields.String())
    description = fields.String()
    enabled = fields.Boolean()
    disabled_reason = fields.String(allow_none=True)
    created_at = fields.DateTime(format="iso")


class DeliveryQuerySchema(_StrictSchema):
    status = fields.String(validate=validate.OneOf(["pending", "succeeded", "failed"]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = PlainText(validate=validate.Length(min=1, max=200))


class DeliveryOutSchema(Schema):
    id = fields.Function(lambda delivery: f"dlv_{delivery.id}")
    event_id = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    last_response = fields.String(allow_none=True)
    # null while an attempt is in flight (its stored value is then the worker's lease).
    next_attempt_at = fields.Function(
        lambda delivery: (
            None
            if delivery.claim is not None or delivery.next_attempt_at is None
            else delivery.next_attempt_at.isoformat()
        )
    )
    created_at = fields.DateTime(format="iso")
    delivered_at = fields.DateTime(format="iso", allow_none=True)


class ReplaySchema(_StrictSchema):
    since = UtcDateTime(required=True)


webhook_out = WebhookOutSchema()
delivery_out = DeliveryOutSchema()
