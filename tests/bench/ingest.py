"""`make bench`: ingest throughput, delivery latency, connections and memory (issue 6).

One run against one real server (`python wsgi.py`, fresh database) so the ratios hold
on a noisy machine:
  1. ceiling   POST /api/v1/bench/echo (same stack, trivial route; BENCH_ROUTES=1)
  2. single    POST /api/v1/events, ~300-byte events, 32 connections
               (1 and 2 alternate for --rounds rounds, 5 or 3 with --quick; the
               median round is reported)
  3. batch     POST /api/v1/events/batch with 100 and 1000 events
  4. floor     the same rows through SQLAlchemy Core executemany in this process
  5. delivery  1 then 50 Socket.IO subscribers while ingesting 500 events/s
  6. idle      1,000 idle Socket.IO clients: server RSS per connection
  7. memory    server RSS while ingesting 1,000,000 events in batches of 1000
  8. webhooks  deliveries/s to one endpoint, 201-to-receiver latency at 200 events/s,
               single-event ingest with an endpoint against without (webhooks.py)
  9. purge     another tenant's single-event p99 while a 1M-event tenant is deleted
               (purge.py)
  +  the access log's cost: step 2 again on a server with LOG_LEVEL=INFO
HTTP load comes from wrk (Lua POST script); subscribers are lean Socket.IO clients on
uvloop (subscribers.py) spread over several processes. SQLite by default;
DATABASE_URL=postgresql://.../postgres means a fresh database on that server.
Results: bench-results/ingest-<db>-<mode>[-quick].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from tests.bench import purge, webhooks
from tests.bench.common import (
    BENCH_DIR,
    ROOT,
    bench_app,
    cpu_seconds,
    environment,
    markdown_table,
    percentile,
    raise_open_files_limit,
    start_server,
    write_results,
)
from tests.bench.data import EventFactory
from tests.bench.load import paced_ingest, profile, run_wrk, wrk_summary, wrk_version
from tests.databases import drop_database, is_postgres, new_database

WRK_INSTALL = "wrk is missing: apt-get install -y wrk (Debian/Ubuntu package 'wrk')"


# --- the server ------------------------------------------------------------------------------


ECHO_PATH = "/api/v1/bench/echo"


def start_bench_server(database_url: str, mode: str, migrate: bool = True, **env: str):
    """The server with BENCH_ROUTES=1, which adds the ceiling route."""
    env = {"BENCH_ROUTES": "1", **env}
    server, limits = start_server(database_url, mode, migrate=migrate, **env)
    if not requests.post(server.url + ECHO_PATH, json={}, timeout=10).ok:
        server.stop()
        raise SystemExit(f"{ECHO_PATH} is missing: the app must register it with BENCH_ROUTES=1")
    return server, limits, f"wsgi.py with BENCH_ROUTES=1 ({ECHO_PATH})"


# --- 1 and 2: ceiling and single-event ingest -----------------------------------------------


def ceiling_and_single(url: str, api_key: str, bodies: list[str], seconds: float, rounds: int):
    """Steps 1 and 2, alternated: each round is a ceiling run, then a single-event run.

    This machine's speed drifts by up to ±20% within minutes (README, Performance), so
    one ceiling measured before one ingest run can make the ratio look better or worse
    than it is. Pairing them round by round and taking the median round keeps that
    drift out of the ratio.
    """
    results = []
    for number in range(1, rounds + 1):
        ceiling = wrk_summary(run_wrk(url + ECHO_PATH, api_key, bodies, 32, seconds))
        single = wrk_summary(run_wrk(url + "/api/v1/events", api_key, bodies, 32, seconds))
        ratio = round(single["events_per_s"] / ceiling["requests_per_s"], 3)
        results.append({"ceiling": ceiling, "single": single, "ratio": ratio})
        print(
            f"  1-2. round {number}: ceiling {ceiling['requests_per_s']:,.0f} requests/s, "
            f"single {single['events_per_s']:,.0f} events/s ({ratio:.2f} x)"
        )
    return results


# --- 4. floor --------------------------------------------------------------------------------


def floor_rows_per_s(database_url: str, tenant_id: int, seconds: float, batch: int = 1000) -> dict:
    """Rows/s of batched executemany inserts through the app's engine, no HTTP."""
    import secrets

    from ingest.extensions import db
    from ingest.models import Event, utcnow

    app = bench_app(database_url)
    factory = EventFactory(seed=4)
    templates = [factory.event() for _ in range(batch)]
    table = Event.__table__
    rows_done, started = 0, None
    with app.app_context():
        engine = db.engine
        while started is None or time.perf_counter() - started < seconds:
            now = utcnow()
            rows = [
                {
                    "tenant_id": tenant_id,
                    "event_id": "evt_" + secrets.token_urlsafe(16),
                    "type": t["type"],
                    "metadata": t["metadata"],
                    "timestamp": now,
                    "received_at": now,
                }
                for t in templates
            ]
            with engine.begin() as conn:  # one transaction per batch, like a batch request
                conn.execute(table.insert(), rows)
            if started is None:  # the first batch warms up the connection
                started = time.perf_counter()
            else:
                rows_done += len(rows)
        elapsed = time.perf_counter() - started
        engine.dispose()
    return {"rows_per_s": round(rows_done / elapsed, 1), "rows": rows_done, "seconds": elapsed}


# --- 5 and 6. subscribers --------------------------------------------------------------------


class SubscriberPool:
    """Subscriber processes (tests/bench/subscribers.py), each holding several clients."""

    def __init__(self, url: str, api_key: str, clients: int, processes: int, tag: str):
        processes = max(1, min(processes, clients))
        shares = [clients // processes + (i < clients % processes) for i in range(processes)]
        self.log = open(Path(tempfile.gettempdir()) / f"bench-subscribers-{tag}.log", "w")  # noqa: SIM115
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(BENCH_DIR / "subscribers.py"), url, api_key, str(n), tag],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
                text=True,
            )
            for n in shares
        ]

    def _replies(self) -> list[dict]:
        replies = []
        for proc in self.procs:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"a subscriber process exited; see {self.log.name}")
            replies.append(json.loads(line))
        return replies

    def ready(self) -> tuple[int, int]:
        replies = self._replies()
        return sum(r["ready"] for r in replies), sum(r["failed"] for r in replies)

    def send(self, command: dict) -> list[dict]:
        for proc in self.procs:
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        return self._replies()

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write('{"cmd": "quit"}\n')
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


def delivery(server, api_key: str, subscribers: int, processes: int, rate: float, seconds: float):
    import hashlib

    import uvloop  # the measuring side's CPU is the server's too, on a small machine

    tag = f"d{subscribers}-{os.getpid()}"
    pool = SubscriberPool(server.url, api_key, subscribers, processes, tag)
    try:
        ready, failed = pool.ready()
        server_cpu, sender_cpu = server.cpu_seconds(), cpu_seconds(os.getpid())
        sent = uvloop.run(paced_ingest(server.url + "/api/v1/events", api_key, rate, seconds, tag))
        server_cpu = server.cpu_seconds() - server_cpu
        sender_cpu = cpu_seconds(os.getpid()) - sender_cpu
        expected_digest = hashlib.sha256("\n".join(sorted(sent["ids"])).encode()).hexdigest()
        replies = pool.send(
            {"cmd": "collect", "expect": len(sent["ids"]), "digest": expected_digest, "timeout": 20}
        )
    finally:
        pool.close()
    latencies = [x for r in replies for x in r["latencies_ms"]]
    complete = [c for r in replies for c in r["complete"]]
    return {
        "subscribers": subscribers,
        "processes": len(pool.procs),
        "connected": ready,
        "connect_failures": failed,
        "events_sent": len(sent["ids"]),
        "send_statuses": sent["statuses"],
        "target_rate": rate,
        "achieved_rate": round(sent["rate"], 1),
        # Send to 201: how much of the latency is the POST itself (commit included).
        "post_p50_ms": round(percentile(sent["answered"], 50), 2),
        "post_p99_ms": round(percentile(sent["answered"], 99), 2),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
        "all_received": ready == subscribers and all(complete) and len(complete) == subscribers,
        "subscribers_complete": sum(complete),
        "received": sum(c for r in replies for c in r["counts"]),
        "duplicates": sum(d for r in replies for d in r["duplicates"]),
        # Over the time the sending took, which is longer than planned when it falls behind.
        "server_cpu_pct": round(100 * server_cpu / sent["elapsed"], 1),
        "sender_cpu_pct": round(100 * sender_cpu / sent["elapsed"], 1),
        "client_cpu_pct_per_process": [
            round(100 * r["cpu_seconds"] / sent["elapsed"], 1) for r in replies
        ],
    }


def idle_connections(server, api_key: str, clients: int, processes: int) -> dict:
    raise_open_files_limit(clients * 4 + 1024)
    time.sleep(2)
    before = server.rss_kib()
    started = time.monotonic()
    pool = SubscriberPool(server.url, api_key, clients, processes, f"idle-{os.getpid()}")
    try:
        ready, failed = pool.ready()
        connect_s = time.monotonic() - started
        time.sleep(5)  # let every handshake finish and the server settle
        after = server.rss_kib()
        still = sum(r["connected"] for r in pool.send({"cmd": "status"}))
    finally:
        pool.close()
    time.sleep(3)
    released = server.rss_kib()
    return {
        "clients": clients,
        "processes": len(pool.procs),
        "connected": ready,
        "connect_failures": failed,
        "still_connected": still,
        "connect_seconds": round(connect_s, 1),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_after_disconnect_kib": released,
        "kib_per_connection": round((after - before) / max(1, ready), 1),
    }


# --- 7. memory -------------------------------------------------------------------------------


def memory_growth(server, api_key: str, total: int) -> dict:
    """Ingest ``total`` events in batches of 1000 (2 connections), sampling RSS 10 times."""
    sample_every = max(1000, total // 10 // 1000 * 1000)
    factory = EventFactory(seed=9)
    bodies = [factory.batch_body(1000).encode() for _ in range(4)]
    url = server.url + "/api/v1/events/batch"
    batches = total // 1000
    lock, done, failures = threading.Lock(), [0], Counter()
    samples = [{"events": 0, "rss_kib": server.rss_kib(), "seconds": 0.0}]
    started = time.monotonic()

    def worker(k: int) -> None:
        session = requests.Session()
        session.headers.update({"X-API-Key": api_key, "Content-Type": "application/json"})
        while True:
            with lock:
                if done[0] >= batches:
                    return
                n = done[0]
                done[0] += 1
            response = session.post(url, data=bodies[n % len(bodies)], timeout=120)
            with lock:
                if response.status_code != 201:
                    failures[response.status_code] += 1
                if (n + 1) * 1000 % sample_every == 0:
                    samples.append(
                        {
                            "events": (n + 1) * 1000,
                            "rss_kib": server.rss_kib(),
                            "seconds": round(time.monotonic() - started, 1),
                        }
                    )

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    samples.sort(key=lambda s: s["events"])
    first = samples[1]["rss_kib"] if len(samples) > 1 else samples[0]["rss_kib"]
    middle = samples[len(samples) // 2]["rss_kib"]
    last = samples[-1]["rss_kib"]
    # Flat: the second half of the run added under 5% (or 8 MiB) to what the first half reached.
    flat = last - middle <= max(0.05 * middle, 8 * 1024)
    return {
        "events": batches * 1000,
        "failures": dict(failures),
        "events_per_s": round(batches * 1000 / elapsed, 1),
        "samples": samples,
        "rss_growth_first_to_last_kib": last - first,
        "rss_growth_second_half_kib": last - middle,
        "flat": flat,
    }


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["eventlet", "threading"], default="eventlet")
    parser.add_argument("--quick", action="store_true", help="smaller counts, shorter runs")
    parser.add_argument("--seconds", type=float, help="per wrk run (default 10, quick 5)")
    parser.add_argument(
        "--rounds", type=int, help="ceiling/single-event pairs (default 5, quick 3)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the single-event path")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip, e.g. memory")
    parser.add_argument(
        "--webhooks-only", action="store_true", help="only step 8, the webhook targets"
    )
    parser.add_argument("--purge-only", action="store_true", help="only step 9, the purge")
    args = parser.parse_args(argv)

    if not shutil.which("wrk"):
        print(WRK_INSTALL, file=sys.stderr)
        return 2
    quick = args.quick
    seconds = args.seconds or (5 if quick else 10)
    idle_clients = 200 if quick else 1000
    memory_events = 100_000 if quick else 1_000_000
    skip = set(filter(None, args.skip.split(",")))
    raise_open_files_limit()

    database_url = new_database(
        Path(tempfile.mkdtemp(prefix="ingest-bench-")), prefix="ingest_bench"
    )
    db_name = "postgresql" if is_postgres(database_url) else "sqlite"
    label = f"{db_name}-{args.mode}" + ("-quick" if quick else "")
    factory = EventFactory(seed=2)
    single_bodies = factory.bodies(500)
    results: dict = {
        "environment": environment(),
        "database": db_name,
        "mode": args.mode,
        "quick": quick,
        "load_generator": f"{wrk_version()}, Lua POST script (tests/bench/post.lua), "
        f"{seconds:g} s per run; subscribers: lean Socket.IO clients on uvloop "
        "(tests/bench/subscribers.py)",
    }
    print(f"ingest bench: {db_name}, {args.mode}, {'quick' if quick else 'full'}")
    print(f"load generator: {results['load_generator']}")
    server = None
    try:
        # The access log's cost first, on its own server (LOG_LEVEL is read at start).
        if "accesslog" not in skip and not (args.webhooks_only or args.purge_only):
            server, _, _ = start_bench_server(database_url, args.mode, LOG_LEVEL="INFO")
            key = server.create_tenant("bench-log")["api_key"]
            events_url = server.url + "/api/v1/events"
            run_wrk(events_url, key, single_bodies, 32, 2)
            logged = wrk_summary(run_wrk(events_url, key, single_bodies, 32, seconds))
            server.stop()
            print(f"  single, LOG_LEVEL=INFO: {logged['events_per_s']:,.0f} events/s")
        # WEBHOOK_ALLOW_PRIVATE: step 8's receiver listens on loopback.
        server, limits, echo_via = start_bench_server(
            database_url, args.mode, WEBHOOK_ALLOW_PRIVATE="1"
        )
        results["rate_limits"], results["ceiling_route"] = limits, echo_via
        rounds = args.rounds or (3 if quick else 5)
        if args.webhooks_only:
            results["webhooks"] = webhooks.run(server, quick, seconds, rounds, label, args.profile)
            return finish(results, f"{label}-webhooks")
        if args.purge_only:
            results["purge"] = purge.run(server, database_url, quick, seconds)
            return finish(results, f"{label}-purge")
        tenant = server.create_tenant("bench")
        key, tenant_id = tenant["api_key"], tenant["id"]
        live_key = server.create_tenant("bench-live")["api_key"]
        events_url = server.url + "/api/v1/events"

        run_wrk(server.url + ECHO_PATH, key, single_bodies, 32, 2)  # warm-up
        run_wrk(events_url, key, single_bodies, 32, 2)
        paired = ceiling_and_single(server.url, key, single_bodies, seconds, rounds)
        median = sorted(paired, key=lambda r: r["ratio"])[len(paired) // 2]
        results["ceiling"], results["single"] = median["ceiling"], median["single"]
        results["single_ratio_by_round"] = [r["ratio"] for r in paired]
        if "accesslog" not in skip:
            results["single_with_access_log"] = logged
        for size in (100, 1000):
            bodies = [factory.batch_body(size) for _ in range(4 if size == 1000 else 20)]
            batch = wrk_summary(
                run_wrk(events_url + "/batch", key, bodies, 4, seconds), per_request=size
            )
            results[f"batch{size}"] = batch
            print(f"  3. batch {size}: {batch['events_per_s']:,.0f} events/s")
        floor = floor_rows_per_s(database_url, tenant_id, seconds)
        results["floor"] = floor
        print(f"  4. floor: {floor['rows_per_s']:,.0f} rows/s")
        if "delivery" not in skip:
            delivery_seconds = 5 if quick else 10
            for count, processes in ((1, 1), (50, 5)):
                d = delivery(server, live_key, count, processes, 500, delivery_seconds)
                results[f"delivery{count}"] = d
                print(
                    f"  5. delivery to {count}: p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, "
                    f"all received: {d['all_received']}"
                )
        if "webhooks" not in skip:
            results["webhooks"] = webhooks.run(server, quick, seconds, rounds, label, args.profile)
        if "idle" not in skip:
            idle = idle_connections(server, live_key, idle_clients, max(2, idle_clients // 125))
            results["idle"] = idle
            print(f"  6. idle: {idle['kib_per_connection']} KiB per connection")
        if args.profile:
            results["profile"] = profile(
                server.pid, 20, label, lambda s: run_wrk(events_url, key, single_bodies, 32, s)
            )
        if "purge" not in skip:
            results["purge"] = purge.run(server, database_url, quick, seconds)
        if "memory" not in skip:
            memory = memory_growth(server, key, memory_events)
            results["memory"] = memory
            print(f"  7. memory: {[s['rss_kib'] // 1024 for s in memory['samples']]} MiB")
    finally:
        if server is not None:
            server.stop()
        drop_database(database_url)
    return finish(results, label)


def finish(results: dict, name: str) -> int:
    report(results)
    path = write_results(f"ingest-{name}.json", results)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


def _pf(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def report(r: dict) -> None:
    rows = _ingest_rows(r) if "ceiling" in r else []
    if "webhooks" in r:
        rows += webhooks.report_rows(r["webhooks"])
    if "purge" in r:
        rows += purge.report_rows(r["purge"])
    print(f"\n### ingest: {r['database']}, {r['mode']}{' (quick)' if r['quick'] else ''}\n")
    print(f"load generator: {r['load_generator']}")
    print(f"ceiling route: {r['ceiling_route']}; rate limits: {r['rate_limits']}\n")
    print(markdown_table(["figure", "value", "ratio", "target", "result"], rows))
    if "profile" in r:
        _print_profile("single-event ingest", r["profile"])
    for name, p in r.get("webhooks", {}).get("profiles", {}).items():
        _print_profile(f"webhooks, {name.replace('_', ' ')}", p)


def _print_profile(title: str, p: dict) -> None:
    if "inclusive_pct" not in p:
        print(f"\npy-spy, {title}: {p.get('error')}")
        return
    print(f"\npy-spy, {title} ({p['samples']} samples; raw stacks {p['raw']}):")
    print(markdown_table(["function (inclusive)", "%"], p["inclusive_pct"][:25]))
    print()
    print(markdown_table(["function (self)", "%"], p["self_pct"][:15]))


def _ingest_rows(r: dict) -> list[list[str]]:
    rows = []
    ceiling = r["ceiling"]["requests_per_s"]
    floor = r["floor"]["rows_per_s"]
    s = r["single"]
    rows.append([f"ceiling: POST {ECHO_PATH}", f"{ceiling:,.0f} req/s", "1.00", "", ""])
    ratio = s["events_per_s"] / ceiling
    rows.append(
        [
            "single-event ingest (c=32)",
            f"{s['events_per_s']:,.0f} events/s",
            f"{ratio:.2f} x ceiling",
            ">= 0.6 x ceiling",
            _pf(ratio >= 0.6 and s["non_2xx"] == 0),
        ]
    )
    rows.append(["  latency p50 / p99", f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms", "", "", ""])
    if len(r.get("single_ratio_by_round", [])) > 1:
        by_round = ", ".join(f"{x:.2f}" for x in r["single_ratio_by_round"])
        rows.append(["  ratio in each round (median shown)", by_round, "", "", ""])
    if "single_with_access_log" in r:
        logged = r["single_with_access_log"]["events_per_s"]
        rows.append(
            [
                "  same with access log (INFO)",
                f"{logged:,.0f} events/s",
                f"{logged / s['events_per_s']:.2f} x no log",
                "",
                "",
            ]
        )
    for size in (100, 1000):
        b = r[f"batch{size}"]
        ratio = b["events_per_s"] / floor
        rows.append(
            [
                f"batch {size} (c=4)",
                f"{b['events_per_s']:,.0f} events/s",
                f"{ratio:.2f} x floor",
                ">= 0.5 x floor" if size == 1000 else "",
                _pf(ratio >= 0.5 and b["non_2xx"] == 0) if size == 1000 else "",
            ]
        )
    rows.append(["floor: SQLAlchemy Core executemany", f"{floor:,.0f} rows/s", "1.00", "", ""])
    if "delivery1" in r:
        one, many = r["delivery1"], r["delivery50"]
        for d in (one, many):
            kept_up = d["achieved_rate"] >= 0.95 * d["target_rate"]
            rows.append(
                [
                    f"delivery, {d['subscribers']} subscriber(s), "
                    f"{d['achieved_rate']:.0f} of {d['target_rate']:.0f} ev/s",
                    f"p50 {d['p50_ms']} / p99 {d['p99_ms']} ms",
                    f"{d['subscribers_complete']}/{d['subscribers']} complete",
                    "every event arrives, at the rate",
                    _pf(d["all_received"] and kept_up),
                ]
            )
            rows.append(
                [
                    "  of which the POST (send to 201)",
                    f"p50 {d['post_p50_ms']} / p99 {d['post_p99_ms']} ms",
                    "",
                    "",
                    "",
                ]
            )
            clients = d["client_cpu_pct_per_process"]
            rows.append(
                [
                    "  CPU: server / sender / subscriber processes",
                    f"{d['server_cpu_pct']:.0f}% / {d['sender_cpu_pct']:.0f}% / "
                    f"{len(clients)} x {sum(clients) / len(clients):.0f}%",
                    "",
                    "",
                    "",
                ]
            )
        ratio = many["p99_ms"] / one["p99_ms"] if one["p99_ms"] else float("nan")
        rows.append(
            [
                "  p99 50 subs / p99 1 sub",
                f"{ratio:.1f}",
                "",
                "<= 3",
                _pf(ratio <= 3),
            ]
        )
    if "idle" in r:
        i = r["idle"]
        rows.append(
            [
                f"idle Socket.IO clients: {i['connected']}/{i['clients']}",
                f"{i['kib_per_connection']} KiB/conn",
                f"RSS {i['rss_before_kib'] // 1024} -> {i['rss_after_kib'] // 1024} MiB",
                "<= 50 KiB",
                _pf(i["kib_per_connection"] <= 50 and i["connected"] == i["clients"]),
            ]
        )
    if "memory" in r:
        m = r["memory"]
        trail = " ".join(str(x["rss_kib"] // 1024) for x in m["samples"])
        rows.append(
            [
                f"RSS over {m['events']:,} events (MiB)",
                trail,
                f"{m['events_per_s']:,.0f} events/s",
                "flat",
                _pf(m["flat"] and not m["failures"]),
            ]
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
