"""Step 9: other tenants' ingest latency while a big tenant is deleted (issue 14).

A tenant with 1,000,000 events (200,000 with --quick), loaded straight into the
database, is deleted through the API; the server that takes the DELETE purges it in
the background in bounded batches (ingest/services/purge.py). Meanwhile another tenant
POSTs single events at a steady rate with the paced sender. The same paced run before
the DELETE is the baseline: the target is a p99 during the purge within 2x of it.
The report also gives the purge's own rate (events removed per second).
"""

from __future__ import annotations

import secrets
import time

import requests

from tests.bench.common import bench_app, percentile
from tests.bench.data import EventFactory
from tests.bench.load import paced_ingest

RATE = 200  # events/s from the other tenant: a steady load, far from saturation
TARGET_RATIO = 2.0


def load_big_tenant(database_url: str, tenant_id: int, count: int, chunk: int = 10_000) -> float:
    """``count`` events for the tenant through the app's engine; returns seconds taken."""
    from ingest.extensions import db
    from ingest.models import Event, utcnow

    app = bench_app(database_url)
    templates = [EventFactory(seed=9).event() for _ in range(1000)]
    table = Event.__table__
    started = time.monotonic()
    with app.app_context():
        for first in range(0, count, chunk):
            now = utcnow()
            rows = [
                {
                    "tenant_id": tenant_id,
                    "event_id": f"big_{first + i}_{secrets.token_hex(4)}",
                    "type": templates[i % 1000]["type"],
                    "metadata": templates[i % 1000]["metadata"],
                    "timestamp": now,
                    "received_at": now,
                }
                for i in range(min(chunk, count - first))
            ]
            with db.engine.begin() as connection:
                connection.execute(table.insert(), rows)
        db.engine.dispose()
    return time.monotonic() - started


def _paced(server, api_key: str, seconds: float) -> dict:
    import uvloop

    sent = uvloop.run(paced_ingest(server.url + "/api/v1/events", api_key, RATE, seconds, "purge"))
    answered = sent["answered"]
    return {
        "statuses": sent["statuses"],
        "p50_ms": round(percentile(answered, 50), 2),
        "p99_ms": round(percentile(answered, 99), 2),
        "max_ms": round(max(answered, default=float("nan")), 2),
    }


def _status(server, tenant_id: int) -> int:
    return server.admin("GET", f"/api/v1/tenants/{tenant_id}").status_code


def run(server, database_url: str, quick: bool, seconds: float) -> dict:
    count = 200_000 if quick else 1_000_000
    big = server.create_tenant(f"bench-big-{secrets.token_hex(3)}")
    other = server.create_tenant(f"bench-other-{secrets.token_hex(3)}")
    loaded_in = load_big_tenant(database_url, big["id"], count)
    print(f"  9. loaded {count:,} events into the tenant to delete in {loaded_in:.0f} s")
    _paced(server, other["api_key"], 2)  # warm-up
    before = _paced(server, other["api_key"], seconds)
    started = time.monotonic()
    deleted = server.admin("DELETE", f"/api/v1/tenants/{big['id']}")
    assert deleted.status_code == 202, deleted.text
    during = _paced(server, other["api_key"], seconds)
    still_purging = _status(server, big["id"]) == 200
    deadline = time.monotonic() + 600
    while _status(server, big["id"]) == 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"the purge did not finish in 10 minutes:\n{server.log()[-2000:]}")
        time.sleep(0.5)
    purge_seconds = time.monotonic() - started
    refused = requests.get(
        server.url + "/api/v1/events", headers={"X-API-Key": big["api_key"]}, timeout=10
    ).status_code
    ratio = during["p99_ms"] / before["p99_ms"] if before["p99_ms"] else float("nan")
    result = {
        "events": count,
        "rate": RATE,
        "seconds": seconds,
        "before": before,
        "during": during,
        "p99_ratio": round(ratio, 2),
        "target_ratio": TARGET_RATIO,
        "purge_still_running_at_end_of_run": still_purging,
        "purge_seconds": round(purge_seconds, 1),
        "purge_events_per_s": round(count / purge_seconds),
        "deleted_key_status": refused,
    }
    print(
        f"  9. other tenant's p99 {before['p99_ms']} ms before, {during['p99_ms']} ms during "
        f"the purge ({ratio:.2f}x; target <= {TARGET_RATIO}x); purge {purge_seconds:.0f} s "
        f"({result['purge_events_per_s']:,} events/s)"
    )
    return result


def report_rows(r: dict) -> list[list[str]]:
    ok = r["p99_ratio"] <= TARGET_RATIO and r["purge_still_running_at_end_of_run"]
    return [
        [
            "9. other tenant's single-event p99 while a tenant is purged",
            f"{r['during']['p99_ms']} ms (before: {r['before']['p99_ms']} ms)",
            f"{r['p99_ratio']}x",
            f"<= {TARGET_RATIO}x",
            "pass" if ok else "FAIL",
        ],
        [
            f"9. purge of {r['events']:,} events",
            f"{r['purge_seconds']} s, {r['purge_events_per_s']:,} events/s",
            "",
            "the run must end before the purge does",
            "ok" if r["purge_still_running_at_end_of_run"] else "purge too short to measure",
        ],
    ]
