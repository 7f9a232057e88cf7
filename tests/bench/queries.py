"""`make bench-queries`: read-path latency through the HTTP API on 1,000,000 events (issue 5).

Creates a fresh PostgreSQL database (ingest_bench_<random>), runs the app's migrations,
bulk-loads one big tenant and a few noise tenants with COPY (seq order = time order over
30 days), fills the search table as the server's background task would, runs VACUUM
ANALYZE, then times each read through a live eventlet server and
prints p50/p95 against the targets, plus EXPLAIN (ANALYZE, BUFFERS) of the SQL the app
ran for the slow ones. Results: bench-results/queries.json.

    python tests/bench/queries.py [--events N] [--keep] [--database URL_OF_A_KEPT_DB]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta

import requests

from tests.bench.common import (
    DEFAULT_PG_URL,
    ROOT,
    BenchServer,
    environment,
    markdown_table,
    percentile,
    start_server,
    write_results,
)
from tests.bench.data import MATCH_WORD, NO_MATCH_WORD, TYPES, EventFactory, type_share
from tests.databases import connect as pg_connect
from tests.databases import create_postgres_database, drop_database, is_postgres

MAIN_TENANT = "bench-main"
RARE_TYPE = TYPES[-1]
COMMON_TYPE = TYPES[0]


# --- loading ---------------------------------------------------------------------------------


class _CopyStream:
    """What psycopg2's copy_expert reads: rows are made while PostgreSQL ingests earlier ones."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)

    def read(self, size: int = -1) -> str:
        return next(self._chunks, "")

    readline = read


def _event_rows(owners: list[int], days: int, seed: int, chunk: int = 1000):
    """COPY text rows in time order; ``owners[i]`` is the tenant of the i-th event."""
    rng = random.Random(seed)
    factory = EventFactory(seed=seed)
    dumps = functools.partial(json.dumps, separators=(",", ":"))
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    start = end - timedelta(days=days)
    step = (end - start) / len(owners)
    for first in range(0, len(owners), chunk):
        count = min(chunk, len(owners) - first)
        types = factory.types(count)
        lines = []
        for j in range(count):
            i = first + j
            at = start + step * i
            received = at + timedelta(milliseconds=rng.randrange(5, 900))
            lines.append(
                f"{owners[i]}\tevt_{i:010x}{rng.getrandbits(48):012x}\t{types[j]}\t"
                f"{dumps(factory.metadata())}\t{at.isoformat()}\t{received.isoformat()}\n"
            )
        yield "".join(lines)


def create_tenants(conn, names: list[str]) -> dict[str, tuple[int, str]]:
    """Insert tenants with fresh API keys; returns name -> (id, api_key)."""
    from ingest.auth import generate_api_key

    made = {}
    with conn.cursor() as cursor:
        for name in names:
            key = generate_api_key()
            cursor.execute(
                "INSERT INTO tenants (name, name_key, disabled, created_at)"
                " VALUES (%s, %s, false, now()) RETURNING id",
                (name, name.lower()),
            )
            tenant_id = cursor.fetchone()[0]
            _add_key(cursor, tenant_id, key)
            made[name] = (tenant_id, key.key)
    conn.commit()
    return made


def rotate_main_key(conn) -> tuple[int, str]:
    """A kept database's main tenant gets a new key (only its hash was stored)."""
    from ingest.auth import generate_api_key

    key = generate_api_key()
    with conn.cursor() as cursor:
        cursor.execute("SELECT id FROM tenants WHERE name_key = %s", (MAIN_TENANT,))
        row = cursor.fetchone()
        if row is None:
            raise SystemExit(f"no tenant {MAIN_TENANT!r} in that database; load one with --keep")
        _add_key(cursor, row[0], key)
    conn.commit()
    return row[0], key.key


def _add_key(cursor, tenant_id: int, key) -> None:
    cursor.execute(
        "INSERT INTO api_keys (tenant_id, key_hash, prefix, created_at) VALUES (%s, %s, %s, now())",
        (tenant_id, key.digest, key.prefix),
    )


def load(conn, main_id: int, main_events: int, noise: list[int], noise_events: int) -> float:
    owners = [main_id] * main_events + [tid for tid in noise for _ in range(noise_events)]
    random.Random(0).shuffle(owners)
    started = time.monotonic()
    with conn.cursor() as cursor:
        # Indexes that back no constraint (whatever the migrations made) are dropped
        # for the load and rebuilt from their own definitions: building a GIN index
        # once is far faster than updating it row by row.
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " WHERE i.tablename IN ('events', 'event_search') AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        secondary = cursor.fetchall()
        for name, _ in secondary:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.copy_expert(
            "COPY events (tenant_id, event_id, type, metadata, timestamp, received_at) FROM STDIN",
            _CopyStream(_event_rows(owners, days=30, seed=1)),
            size=65536,
        )
        loaded = time.monotonic() - started
        print(f"  copied {len(owners):,} events in {loaded:.0f} s ({len(owners) / loaded:,.0f}/s)")
        # What the serving process's search index task does (ingest/maintenance.py), for
        # the whole queue at once: the timed searches then run on an index that has
        # caught up, as it has a moment after ingestion.
        cursor.execute(
            "INSERT INTO event_search (seq, tenant_id, type_text, metadata_text)"
            " SELECT e.seq, e.tenant_id, e.type, CAST(e.metadata AS TEXT)"
            " FROM events e JOIN event_search_pending USING (seq)"
        )
        cursor.execute("TRUNCATE event_search_pending")
        print(f"  filled event_search in {time.monotonic() - started - loaded:.0f} s")
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for name, definition in secondary:
            began = time.monotonic()
            cursor.execute(definition)
            print(f"  rebuilt {name} in {time.monotonic() - began:.0f} s")
        cursor.execute("RESET maintenance_work_mem")
    conn.commit()
    loaded = time.monotonic() - started
    conn.autocommit = True
    started = time.monotonic()
    with conn.cursor() as cursor:
        # The steady state of a live table: autovacuum has set the visibility map
        # (index-only scans) and the statistics.
        for table in ("events", "event_search", "event_search_pending", "tenants"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    conn.autocommit = False
    print(f"  VACUUM ANALYZE in {time.monotonic() - started:.0f} s")
    return loaded


# --- measuring -------------------------------------------------------------------------------


def measure(
    session, url: str, params: dict, samples: int, warmup: int, budget_s: float, keep_alive: bool
):
    """Latencies (ms) of ``samples`` sequential GETs after ``warmup`` untimed ones.

    Without ``keep_alive`` each request opens its own connection: `python wsgi.py`
    leaves Nagle on, so on a kept-alive connection any response over eventlet's 16 KiB
    write buffer waits ~40 ms for the client's delayed ACK, which would hide the
    query's own time. The "(keep-alive)" row shows that stall.
    """
    timings, body = [], None
    deadline = time.monotonic() + budget_s
    for n in range(warmup + samples):
        started = time.perf_counter()
        if keep_alive:
            response = session.get(url, params=params, timeout=120)
        else:
            response = requests.get(
                url,
                params=params,
                headers={**session.headers, "Connection": "close"},
                timeout=120,
            )
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} {params}: {response.status_code} {response.text}")
        body = response.json()
        if n >= warmup:
            timings.append(elapsed)
        if time.monotonic() > deadline and len(timings) >= 1:
            print(f"    time budget spent after {len(timings)} samples")
            break
    return timings, body


def walk_to_page(session, url: str, page: int) -> str:
    params: dict = {}
    for _ in range(page - 1):
        response = session.get(url, params=params, timeout=30)
        if response.status_code != 200 or not response.json().get("next_cursor"):
            raise RuntimeError(f"walking pages: {response.status_code} {response.text[:500]}")
        params = {"cursor": response.json()["next_cursor"]}
    return params["cursor"]


def queries(cursor100: str) -> list[dict]:
    q = [
        ("first page", {}, 20),
        ("first page (keep-alive)", {}, 20),
        ("page 100 (cursor)", {"cursor": cursor100}, 20),
        (f"type={COMMON_TYPE} ({type_share(COMMON_TYPE):.0%})", {"type": COMMON_TYPE}, 50),
        (f"type={RARE_TYPE} ({type_share(RARE_TYPE):.1%})", {"type": RARE_TYPE}, 50),
        (f"q={MATCH_WORD} (~1%)", {"q": MATCH_WORD}, 200),
        (f"q={NO_MATCH_WORD} (no match)", {"q": NO_MATCH_WORD}, 200),
        ("stats", "stats", 150),
    ]
    return [
        {
            "query": name,
            "path": "/api/v1/events/stats" if params == "stats" else "/api/v1/events",
            "params": {} if params == "stats" else params,
            "target_ms": target,
        }
        for name, params, target in q
    ]


# --- plans -----------------------------------------------------------------------------------


def explain(database_url: str, api_key: str, items: list[dict]) -> dict[str, str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest events query each request ran in-process."""
    from sqlalchemy import event as sa_event

    from ingest import create_app
    from ingest.config import normalise_database_url
    from ingest.extensions import db

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
            "SOCKETIO_ASYNC_MODE": "threading",
            "RATELIMIT_STORAGE_URI": "memory://",
            "TENANT_RATE_LIMIT_DEFAULT": "1000000000/minute",
            "TENANT_READ_RATE_LIMIT": "1000000000/minute",
            "AUTH_FAILURE_RATE_LIMIT": "1000000000/minute",
            "LOG_LEVEL": "WARNING",
        }
    )
    ran: list[tuple[float, str]] = []
    with app.app_context():

        @sa_event.listens_for(db.engine, "before_cursor_execute")
        def _before(conn, cursor, statement, parameters, context, executemany):
            conn.info["bench_sql"] = cursor.mogrify(statement, parameters).decode()
            conn.info["bench_t0"] = time.perf_counter()

        @sa_event.listens_for(db.engine, "after_cursor_execute")
        def _after(conn, cursor, statement, parameters, context, executemany):
            ran.append((time.perf_counter() - conn.info["bench_t0"], conn.info["bench_sql"]))

    client = app.test_client()
    plans = {}
    conn = pg_connect(database_url)
    for item in items:
        ran.clear()
        headers = {"X-API-Key": api_key}
        response = client.get(item["path"], query_string=item["params"], headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        statements = [(t, sql) for t, sql in ran if "FROM events" in sql]
        if not statements:
            continue
        sql = max(statements)[1]
        with conn.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        conn.rollback()
        plans[item["query"]] = f"{sql}\n\n{plan}"
    conn.close()
    with app.app_context():
        db.engine.dispose()
    return plans


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the main tenant")
    parser.add_argument("--noise-tenants", type=int, default=4)
    parser.add_argument("--noise-events", type=int, default=100_000, help="per noise tenant")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--budget", type=float, default=180, help="seconds per query, at most")
    parser.add_argument("--explain", choices=["slow", "all"], default="slow")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the database for --database")
    parser.add_argument("--database", help="measure this kept database instead of loading one")
    args = parser.parse_args(argv)

    env_url = os.environ.get("DATABASE_URL")
    server_url = env_url if is_postgres(env_url) else DEFAULT_PG_URL
    created = args.database is None
    database_url = args.database or create_postgres_database(server_url, prefix="ingest_bench")
    print(f"database: {database_url}")
    server = None
    results: dict = {"environment": environment(), "database": database_url.rsplit("/", 1)[1]}
    try:
        conn = pg_connect(database_url)
        if created:
            started = time.monotonic()
            BenchServer(database_url, "eventlet").migrate()
            noise_names = [f"bench-noise-{i}" for i in range(args.noise_tenants)]
            tenants = create_tenants(conn, [MAIN_TENANT, *noise_names])
            main_id, api_key = tenants[MAIN_TENANT]
            print(
                f"loading {args.events:,} events for {MAIN_TENANT} and "
                f"{args.noise_tenants} x {args.noise_events:,} noise events (COPY)"
            )
            copy_s = load(
                conn, main_id, args.events, [tenants[n][0] for n in noise_names], args.noise_events
            )
            results["load_seconds"] = {"copy": copy_s, "total": time.monotonic() - started}
        else:
            main_id, api_key = rotate_main_key(conn)
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM events WHERE tenant_id = %s", (main_id,))
            main_count = cursor.fetchone()[0]
            cursor.execute("SELECT count(*), pg_total_relation_size('events') FROM events")
            total, size = cursor.fetchone()
        conn.close()
        results["dataset"] = {"main_tenant_events": main_count, "all_events": total, "bytes": size}
        print(f"  {main_count:,} of {total:,} events are the main tenant's; {size >> 20:,} MiB")

        server, limits = start_server(database_url, "eventlet", migrate=False)
        results["rate_limits"] = limits
        session = requests.Session()
        session.headers["X-API-Key"] = api_key
        events_url = server.url + "/api/v1/events"
        cursor100 = walk_to_page(session, events_url, 100)
        items = queries(cursor100)
        rows = []
        for item in items:
            print(f"  timing {item['query']} ...", flush=True)
            timings, body = measure(
                session,
                server.url + item["path"],
                item["params"],
                args.samples,
                args.warmup,
                args.budget,
                keep_alive="keep-alive" in item["query"],
            )
            item.update(
                samples=len(timings),
                p50_ms=round(percentile(timings, 50), 2),
                p95_ms=round(percentile(timings, 95), 2),
                returned=len(body["data"]) if "data" in body else body.get("total"),
            )
            item["pass"] = item["p95_ms"] < item["target_ms"]
            rows.append(
                [
                    item["query"],
                    item["p50_ms"],
                    item["p95_ms"],
                    f"< {item['target_ms']}",
                    "pass" if item["pass"] else "FAIL",
                    item["samples"] if item["samples"] >= 30 else f"{item['samples']} (< 30)",
                ]
            )
        server.stop()
        results["results"] = items

        print(f"\nRead path on {main_count:,} events (+ {total - main_count:,} noise), eventlet:\n")
        print(markdown_table(["query", "p50 ms", "p95 ms", "target", "result", "n"], rows))

        slow = [
            i
            for i in items
            if "keep-alive" not in i["query"]
            and (args.explain == "all" or i["p95_ms"] > i["target_ms"] / 2)
        ]
        plans = explain(database_url, api_key, slow)
        results["plans"] = plans
        for name, plan in plans.items():
            print(f"\n### EXPLAIN (ANALYZE, BUFFERS): {name}\n\n```\n{plan}\n```")
        path = write_results("queries.json", results)
        print(f"\nwrote {path.relative_to(ROOT)}")
        return 1 if args.strict and not all(i["pass"] for i in items) else 0
    finally:
        if server is not None:
            server.stop()
        if created and not args.keep:
            drop_database(database_url)
        elif created:
            print(f"kept {database_url}; measure it again with --database {database_url}")


if __name__ == "__main__":
    sys.exit(main())
