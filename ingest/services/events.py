"""Reading events: lists with cursors, statistics, time series."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Integer, Text, cast, func, or_, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from ..errors import ValidationError
from ..extensions import db
from ..models import Event, EventSearch, EventSearchPending, utcnow
from ..schemas import event_json

# --- reading ----------------------------------------------------------------------------------


# A cursor names a storage sequence number: a positive 64-bit integer on every backend.
_CURSOR = re.compile(r"v1:([0-9]{1,19})\Z")
_MAX_SEQ = 2**63 - 1


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        match = _CURSOR.match(raw)
        if match is None or not 0 < int(match.group(1)) <= _MAX_SEQ:
            raise ValueError
        return int(match.group(1))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError(
            "The cursor is malformed; pass next_cursor from a previous page unchanged.",
            details={"cursor": ["Malformed cursor."]},
        ) from None


@dataclass
class EventQuery:
    types: list[str] = field(default_factory=list)
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _time_filters(since: datetime | None, until: datetime | None) -> list:
    filters = []
    if since is not None:
        filters.append(Event.timestamp >= since)
    if until is not None:
        filters.append(Event.timestamp < until)
    return filters


class lowered(FunctionElement):
    """Text in lower case, Unicode-aware on every backend.

    PostgreSQL's lower() folds "É" to "é"; SQLite's folds ASCII only, so there it is
    Python's str.lower, registered on each connection (ingest/__init__.py).
    """

    inherit_cache = True
    type = Text()


@compiles(lowered)
def _lowered_default(element, compiler, **kw):
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(lowered, "sqlite")
def _lowered_sqlite(element, compiler, **kw):
    return f"unicode_lower({compiler.process(element.clauses, **kw)})"


def _text_matches(type_text, metadata_text, pattern: str):
    return or_(type_text.like(pattern, escape="\\"), metadata_text.like(pattern, escape="\\"))


def _search_filter(tenant_id: int, query: EventQuery, before: int | None):
    """Events whose type or metadata text contains ``query.q``, case-insensitively.

    On PostgreSQL through event_search's trigram indexes, plus a scan of the events
    still queued for it (a moment's worth: see ingest/maintenance.py); elsewhere a scan.
    Without a time range every other filter of the list applies inside the search too,
    so only the page's own rows are looked up in events, not every match.
    """
    pattern = f"%{_escape_like(query.q.lower())}%"
    scanned = _text_matches(lowered(Event.type), lowered(cast(Event.data, Text)), pattern)
    if db.engine.dialect.name != "postgresql":
        return scanned
    indexed = select(EventSearch.seq).where(
        EventSearch.tenant_id == tenant_id,
        _text_matches(
            func.lower(EventSearch.type_text), func.lower(EventSearch.metadata_text), pattern
        ),
    )
    queued = (
        select(Event.seq)
        .join(EventSearchPending, EventSearchPending.seq == Event.seq)
        .where(Event.tenant_id == tenant_id, scanned)
    )
    if query.types:
        indexed = indexed.where(EventSearch.type_text.in_(query.types))
        queued = queued.where(Event.type.in_(query.types))
    if before is not None:
        indexed = indexed.where(EventSearch.seq < before)
        queued = queued.where(Event.seq < before)
    if query.since is None and query.until is None:
        indexed = indexed.order_by(EventSearch.seq.desc()).limit(query.limit + 1)
        queued = queued.order_by(Event.seq.desc()).limit(query.limit + 1)
    return Event.seq.in_(union_all(indexed, queued))


def list_events(tenant_id: int, query: EventQuery) -> tuple[list[Event], str | None]:
    """Newest stored first; keyset pagination on the storage sequence."""
    before = decode_cursor(query.cursor) if query.cursor else None
    stmt = select(Event).where(
        Event.tenant_id == tenant_id, *_time_filters(query.since, query.until)
    )
    if query.types:
        stmt = stmt.where(Event.type.in_(query.types))
    if query.q:
        stmt = stmt.where(_search_filter(tenant_id, query, before))
    if before is not None:
        stmt = stmt.where(Event.seq < before)
    rows = list(db.session.scalars(stmt.order_by(Event.seq.desc()).limit(query.limit + 1)))
    page = rows[: query.limit]
    next_cursor = encode_cursor(page[-1].seq) if len(rows) > query.limit else None
    return page, next_cursor


def export_events(
    tenant_id: int,
    types: list[str],
    since: datetime | None,
    until: datetime | None,
    batch: int,
) -> Iterator[list[dict]]:
    """The tenant's events (as ``event_json`` renders them) in storage order, oldest first,
    ``batch`` at a time: a keyset on the storage sequence, so memory stays flat however
    many there are.

    Each page is its own short read, not one transaction held open for the whole
    export: events stored while it runs may or may not be in it.
    """
    events = Event.__table__
    stmt = select(events).where(events.c.tenant_id == tenant_id, *_time_filters(since, until))
    if types:
        stmt = stmt.where(events.c.type.in_(types))
    after = 0
    while True:
        with db.engine.connect() as connection:
            rows = connection.execute(
                stmt.where(events.c.seq > after).order_by(events.c.seq).limit(batch)
            ).all()
        if not rows:
            return
        yield [event_json(row._asdict()) for row in rows]
        if len(rows) < batch:
            return
        after = rows[-1].seq


def event_stats(tenant_id: int, since: datetime | None, until: datetime | None) -> dict:
    count = func.count().label("count")
    rows = db.session.execute(
        select(Event.type, count, func.min(Event.timestamp), func.max(Event.timestamp))
        .where(Event.tenant_id == tenant_id, *_time_filters(since, until))
        .group_by(Event.type)
        .order_by(count.desc(), Event.type)
    ).all()
    return {
        "total": sum(row[1] for row in rows),
        "by_type": [{"type": row[0], "count": row[1]} for row in rows],
        "first_event_at": min((row[2] for row in rows), default=None),
        "last_event_at": max((row[3] for row in rows), default=None),
    }


INTERVALS = {"minute": 60, "hour": 3600}
MAX_BUCKETS = 1440


class _epoch_bucket(ColumnElement):
    """floor(epoch seconds of ``column`` / width): one integer per time bucket, on any backend."""

    inherit_cache = True
    type = Integer()

    def __init__(self, column, width: int):
        self.column = column
        self.width = width


@compiles(_epoch_bucket, "postgresql")
def _epoch_bucket_postgresql(element, compiler, **kw):
    column = compiler.process(element.column, **kw)
    return f"CAST(floor(extract(epoch from {column}) / {int(element.width)}) AS BIGINT)"


@compiles(_epoch_bucket)
def _epoch_bucket_sqlite(element, compiler, **kw):
    # Floor division, as in Python: SQLite's "/" and "%" round toward zero, which put
    # events before 1970 (negative seconds) in the bucket after theirs.
    seconds = f"CAST(strftime('%s', {compiler.process(element.column, **kw)}) AS INTEGER)"
    width = int(element.width)
    return f"(({seconds} - (({seconds} % {width}) + {width}) % {width}) / {width})"


DEFAULT_TIMESERIES_SPAN = timedelta(hours=1)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def event_timeseries(
    tenant_id: int, since: datetime | None, until: datetime | None, interval: str
) -> list[dict]:
    """Event counts per time bucket (on ``timestamp``) in [since, until), empty buckets included.

    ``until`` defaults to now and ``since`` to an hour before ``until`` (or year 1, if
    ``until`` is within an hour of it).
    """
    until = until or utcnow()
    if since is None:
        since = (
            until - DEFAULT_TIMESERIES_SPAN
            if until - _EARLIEST > DEFAULT_TIMESERIES_SPAN
            else _EARLIEST
        )
    if since >= until:
        raise ValidationError(
            "since must be earlier than until (which defaults to now).",
            details={"since": ["Not earlier than until."]},
        )
    width = INTERVALS[interval]
    # The buckets of since and of the last instant before until: an until of 12:00:00.5
    # still has events at 12:00:00.2, in the 12:00 bucket.
    first = math.floor(since.timestamp()) // width
    last = (math.ceil(until.timestamp()) - 1) // width
    if last - first + 1 > MAX_BUCKETS:
        raise ValidationError(
            f"That range holds more than {MAX_BUCKETS} {interval}s; narrow it or use a wider "
            "interval.",
            details={"since": ["Range too wide for this interval."]},
        )
    bucket = _epoch_bucket(Event.timestamp, width)
    rows = db.session.execute(
        select(bucket, func.count())
        .where(Event.tenant_id == tenant_id, *_time_filters(since, until))
        .group_by(bucket)
    ).all()
    counts = {int(b): n for b, n in rows}
    return [
        {"start": datetime.fromtimestamp(b * width, UTC), "count": counts.get(b, 0)}
        for b in range(first, last + 1)
    ]
