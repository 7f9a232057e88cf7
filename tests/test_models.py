"""Column types: what they store must not depend on which code path wrote it."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from ingest.models import UTCDateTime


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 26, 17, 22, 36, 123456, tzinfo=UTC),
        datetime(2026, 11, 26, 17, 22, 36, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),  # a three-digit year, zero-padded
    ],
)
def test_sqlite_text_matches_sqlalchemys_datetime_format(value):
    dialect = sqlite.dialect()
    stock = sqlite.DATETIME().bind_processor(dialect)
    ours = UTCDateTime().bind_processor(dialect)
    assert ours(value) == stock(value.astimezone(UTC).replace(tzinfo=None))
    assert ours(None) is None


def test_a_stored_time_reads_back_as_the_same_aware_utc_instant(app):
    from ingest.extensions import db
    from ingest.models import Event, Tenant

    when = datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with app.app_context():
        tenant = Tenant(name="t", name_key="t")
        db.session.add(tenant)
        db.session.flush()
        db.session.add(
            Event(tenant_id=tenant.id, event_id="e", type="a", timestamp=when, received_at=when)
        )
        db.session.commit()
        stored = db.session.scalars(db.select(Event)).one()
        assert stored.timestamp == when
        assert stored.timestamp.tzinfo == UTC
