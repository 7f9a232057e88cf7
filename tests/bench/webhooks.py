"""`make bench`'s webhook steps: the three targets of the webhooks issue.

On the bench's server (WEBHOOK_ALLOW_PRIVATE=1, the worker beside it as it ships,
default settings), one tenant with one endpoint at a fast receiver process on the same
machine (receiver.py: bare HTTP/1.1 keep-alive on uvloop, 200 with an empty body):
  8a. sustained  N events loaded in batches of 1000; the deliveries per second the
                 worker sustains once the load has ended (until the last arrives),
                 and from the first arrival to the last; the median of the rounds.
                 Target: >= 1,000/s.
  8b. latency    single events POSTed at 200/s (the paced sender of step 5): each
                 one's arrival at the receiver minus the moment its 201 arrived, on
                 the one clock of this machine. Target: p50 <= 50 ms.
  8c. ingest     wrk single-event runs as in step 2, on the tenant with its endpoint
                 disabled, then enabled, round after round (the backlog drained
                 before the next round); the median round's ratio. Target: >= 0.8.
Figures are reported, not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.bench.common import BENCH_DIR, cpu_seconds, markdown_table, percentile
from tests.bench.data import EventFactory
from tests.bench.load import paced_ingest, profile, run_wrk, wrk_summary

SUSTAINED_TARGET = 1000  # deliveries/s
LATENCY_TARGET_MS = 50  # p50, 201 to the receiver
INGEST_TARGET = 0.8  # x the rate without webhooks


class ReceiverProcess:
    """receiver.py in a process of its own, driven over its stdin/stdout."""

    def __init__(self):
        self.log = open(Path(tempfile.gettempdir()) / "bench-receiver.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "receiver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.port = self._reply()["port"]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the receiver exited; see {self.log.name}")
        return json.loads(line)

    def send(self, cmd: str, **fields) -> dict:
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def collect(self, expect: int, timeout: float) -> dict:
        """What arrived since the last collect, once ``expect`` distinct ids have (or timeout)."""
        return self.send("collect", expect=expect, timeout=timeout)

    def close(self) -> None:
        try:
            self.process.stdin.write('{"cmd": "quit"}\n')
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (BrokenPipeError, ValueError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.log.close()


class Endpoint:
    """A tenant of its own with one webhook endpoint: the receiver, every event type."""

    def __init__(self, server, receiver: ReceiverProcess, name: str):
        self.server = server
        self.api_key = server.create_tenant(name)["api_key"]
        created = self._call("POST", "", json={"url": receiver.url})
        self.id = created["id"]
        receiver.send("secret", secret=created["secret"])

    def _call(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(
            method,
            f"{self.server.url}/api/v1/webhooks{path}",
            headers={"X-API-Key": self.api_key},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def enable(self, enabled: bool) -> None:
        self._call("PATCH", f"/{self.id}", json={"enabled": enabled})


def _drain_timeout(count: int) -> float:
    """Long enough for ``count`` deliveries at 100/s, a tenth of the target."""
    return 30 + count / 100


def _first_arrivals(arrivals: list) -> dict[str, float]:
    first: dict[str, float] = {}
    for event_id, at in arrivals:
        first.setdefault(event_id, at)
    return first


def _delivery_check(ids: list[str], got: dict) -> dict:
    """Whether every event arrived, and arrived as a receiver wants it (once, signed)."""
    arrived = {event_id for event_id, _ in got["arrivals"]}
    return {
        "expected": len(ids),
        "received": len(got["arrivals"]),
        "missing": len(set(ids) - arrived),
        "duplicates": got["duplicates"],
        "bad_signatures": got["bad_signatures"],
        "unsigned": got["unsigned"],
        "all_received": arrived >= set(ids),
        "receiver_new_connections": got["connections"],
    }


# --- 8a. sustained deliveries/s ----------------------------------------------------------------


def load_events(server, api_key: str, count: int, seed: int) -> list[str]:
    """``count`` new events in batches of 1000, one request after another; their ids."""
    factory = EventFactory(seed=seed)
    bodies = [factory.batch_body(1000) for _ in range(4)]
    ids = []
    with requests.Session() as session:
        session.headers.update({"X-API-Key": api_key, "Content-Type": "application/json"})
        for n in range(count // 1000):
            response = session.post(
                server.url + "/api/v1/events/batch", data=bodies[n % len(bodies)], timeout=120
            )
            response.raise_for_status()
            ids.extend(response.json()["ids"])
    return ids


def sustained_round(server, receiver: ReceiverProcess, endpoint: Endpoint, count: int) -> dict:
    server_cpu, worker_cpu = server.cpu_seconds(), server.worker_cpu_seconds()
    started = time.time()
    ids = load_events(server, endpoint.api_key, count, seed=int(started))
    loaded = time.time()
    got = receiver.collect(len(ids), _drain_timeout(len(ids)))
    server_cpu = server.cpu_seconds() - server_cpu
    worker_cpu = server.worker_cpu_seconds() - worker_cpu
    times = sorted(at for _, at in got["arrivals"])
    first, last = (times[0], times[-1]) if times else (loaded, loaded)
    after_load = [at for at in times if at > loaded]
    return {
        "events": len(ids),
        "load_seconds": round(loaded - started, 2),
        "first_arrival_after_start_s": round(first - started, 3),
        "arrived_during_load": len(times) - len(after_load),
        # The worker alone, with a backlog throughout: from the end of the load to the last.
        "deliveries_per_s": round(len(after_load) / (last - loaded), 1) if last > loaded else None,
        "first_to_last_per_s": round((len(times) - 1) / (last - first), 1)
        if last > first
        else None,
        "drain_seconds": round(last - loaded, 2),
        "server_cpu_pct": round(100 * server_cpu / max(last - started, 1e-9), 1),
        "worker_cpu_pct": round(100 * worker_cpu / max(last - started, 1e-9), 1),
        "receiver_cpu_seconds": got["cpu_seconds"],
        **_delivery_check(ids, got),
    }


def sustained(server, receiver, endpoint, count: int, rounds: int) -> dict:
    results = []
    for number in range(1, rounds + 1):
        r = sustained_round(server, receiver, endpoint, count)
        results.append(r)
        print(
            f"  8a. round {number}: {r['deliveries_per_s'] or 0:,.0f} deliveries/s after the load "
            f"({r['first_to_last_per_s'] or 0:,.0f}/s first to last), "
            f"{r['received']}/{r['expected']} received"
        )
    median = sorted(results, key=lambda r: r["deliveries_per_s"] or 0)[len(results) // 2]
    return {
        **median,
        "by_round": [r["deliveries_per_s"] for r in results],
        "rounds": results,
    }


# --- 8b. latency from the 201 to the receiver --------------------------------------------------


def latency(server, receiver, endpoint, rate: float, seconds: float) -> dict:
    import uvloop

    server_cpu, sender_cpu = server.cpu_seconds(), cpu_seconds(os.getpid())
    sent = uvloop.run(
        paced_ingest(server.url + "/api/v1/events", endpoint.api_key, rate, seconds, "webhooks")
    )
    server_cpu = server.cpu_seconds() - server_cpu
    sender_cpu = cpu_seconds(os.getpid()) - sender_cpu
    got = receiver.collect(len(sent["ids"]), _drain_timeout(len(sent["ids"])))
    arrived = _first_arrivals(got["arrivals"])
    answered = sent["answered_at"]
    latencies = [(arrived[i] - answered[i]) * 1000 for i in sent["ids"] if i in arrived]
    return {
        "target_rate": rate,
        "achieved_rate": round(sent["rate"], 1),
        "send_statuses": sent["statuses"],
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
        # Arrived before its 201 did: the worker can be quicker than the response.
        "before_201": sum(1 for x in latencies if x < 0),
        "post_p50_ms": round(percentile(sent["answered"], 50), 2),
        "post_p99_ms": round(percentile(sent["answered"], 99), 2),
        "server_cpu_pct": round(100 * server_cpu / sent["elapsed"], 1),
        "sender_cpu_pct": round(100 * sender_cpu / sent["elapsed"], 1),
        "receiver_cpu_seconds": got["cpu_seconds"],
        **_delivery_check(sent["ids"], got),
    }


# --- 8c. single-event ingest with and without the endpoint -------------------------------------


def with_and_without(server, receiver, endpoint, bodies: list[str], seconds: float, rounds: int):
    """Rounds of: the endpoint disabled, a wrk run; enabled, a wrk run; its backlog drained.

    Besides the rates, the server's CPU per stored event: without, over the run; with,
    over the run and the drain after it, so it holds every delivery's cost. On a
    machine where others run too, their ratio says what the rates would be if the
    server had a core of its own (CPU-bound both ways). With the worker in a process
    beside the server (WEBHOOK_WORKER=process), that process's CPU per delivery apart.
    """
    url = server.url + "/api/v1/events"
    key = endpoint.api_key
    results = []
    for number in range(1, rounds + 1):
        endpoint.enable(False)
        cpu_before = server.cpu_seconds()
        without = wrk_summary(run_wrk(url, key, bodies, 32, seconds))
        cpu_without = server.cpu_seconds() - cpu_before
        endpoint.enable(True)
        started = time.time()
        cpu_before, worker_before = server.cpu_seconds(), server.worker_cpu_seconds()
        with_endpoint = wrk_summary(run_wrk(url, key, bodies, 32, seconds))
        ended = time.time()
        server_cpu = server.cpu_seconds() - cpu_before
        stored = with_endpoint["wrk"]["s201"]
        got = receiver.collect(stored, _drain_timeout(stored))
        time.sleep(0.2)  # the last outcomes' recording
        cpu_with = server.cpu_seconds() - cpu_before
        worker_cpu = server.worker_cpu_seconds() - worker_before
        times = [at for _, at in got["arrivals"]]
        cpu_us_without = 1e6 * cpu_without / max(without["wrk"]["s201"], 1)
        cpu_us_with = 1e6 * cpu_with / max(stored, 1)
        during = sum(1 for at in times if at <= ended)
        ratio = round(with_endpoint["events_per_s"] / without["events_per_s"], 3)
        results.append(
            {
                "without": without,
                "with": with_endpoint,
                "ratio": ratio,
                "delivered_during_run": during,
                "delivered_during_run_per_s": round(during / (ended - started), 1),
                "drained_after_s": round(max(times, default=ended) - ended, 2),
                "server_cpu_pct_with": round(100 * server_cpu / (ended - started), 1),
                "cpu_us_per_event_without": round(cpu_us_without),
                "cpu_us_per_event_with": round(cpu_us_with),
                "cpu_ratio": round(cpu_us_without / cpu_us_with, 3),
                "worker_cpu_us_per_delivery": round(1e6 * worker_cpu / max(stored, 1)),
                "expected": stored,
                "received": got["distinct"],
                "missing": max(0, stored - got["distinct"]),
                "duplicates": got["duplicates"],
                "bad_signatures": got["bad_signatures"],
            }
        )
        print(
            f"  8c. round {number}: without {without['events_per_s']:,.0f}, with "
            f"{with_endpoint['events_per_s']:,.0f} events/s ({ratio:.2f} x); "
            f"{during / max(stored, 1):.0%} delivered during the run; server CPU per event "
            f"{cpu_us_without:.0f} -> {cpu_us_with:.0f} us ({cpu_us_without / cpu_us_with:.2f} x), "
            f"worker process {1e6 * worker_cpu / max(stored, 1):.0f} us per delivery"
        )
    median = sorted(results, key=lambda r: r["ratio"])[len(results) // 2]
    cpu_ratios = sorted(r["cpu_ratio"] for r in results)
    return {
        **median,
        "by_round": [r["ratio"] for r in results],
        "cpu_ratio_median": cpu_ratios[len(cpu_ratios) // 2],
        "rounds": results,
    }


# --- the steps together ------------------------------------------------------------------------


def run(server, quick: bool, seconds: float, rounds: int, label: str, profiling: bool) -> dict:
    """Steps 8a-8c on a started server; with ``profiling``, py-spy of 8a and 8c too."""
    receiver = ReceiverProcess()
    try:
        endpoint = Endpoint(server, receiver, "bench-webhooks")
        bodies = EventFactory(seed=5).bodies(500)
        # Warm-up: the worker's connections, the receiver, the server's caches.
        load_events(server, endpoint.api_key, 1000, seed=0)
        receiver.collect(1000, _drain_timeout(1000))
        count = 5000 if quick else 10_000
        results = {
            "receiver": "tests/bench/receiver.py (HTTP/1.1 keep-alive on uvloop, 200, empty body)",
            "sustained": sustained(server, receiver, endpoint, count, 3),
        }
        results["latency"] = lat = latency(server, receiver, endpoint, 200, 5 if quick else 10)
        print(
            f"  8b. 201 -> receiver at {lat['achieved_rate']:.0f} events/s: p50 {lat['p50_ms']} "
            f"/ p95 {lat['p95_ms']} / p99 {lat['p99_ms']} ms, all received: {lat['all_received']}"
        )
        results["ingest"] = with_and_without(server, receiver, endpoint, bodies, seconds, rounds)
        if profiling:
            results["profiles"] = profiles(server, receiver, endpoint, bodies, label)
        return results
    finally:
        receiver.close()


def profiles(server, receiver, endpoint, bodies: list[str], label: str) -> dict:
    """py-spy of the server draining a backlog, then ingesting single events with the endpoint."""

    def drain(seconds: float) -> None:
        ids = load_events(server, endpoint.api_key, int(seconds * 500) // 1000 * 1000, seed=11)
        receiver.collect(len(ids), _drain_timeout(len(ids)))

    def single(seconds: float) -> None:
        stored = run_wrk(server.url + "/api/v1/events", endpoint.api_key, bodies, 32, seconds)
        receiver.collect(stored["s201"], _drain_timeout(stored["s201"]))

    return {
        "drain": profile(server.pid, 20, f"{label}-webhooks-drain", drain),
        "single_with_endpoint": profile(server.pid, 20, f"{label}-webhooks-single", single),
    }


# --- the report --------------------------------------------------------------------------------


def _pf(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _detail(label: str, value: str, note: str = "") -> list[str]:
    """A row under a target's row: no target and no result of its own."""
    return [label, value, note, "", ""]


def report_rows(w: dict) -> list[list[str]]:
    rows = []
    s = w["sustained"]
    rate = s["deliveries_per_s"] or 0
    rows.append(
        [
            f"webhooks: deliveries/s to one endpoint ({s['events']:,} queued)",
            f"{rate:,.0f}/s",
            f"{rate / SUSTAINED_TARGET:.2f} x target",
            f">= {SUSTAINED_TARGET:,}/s",
            _pf(rate >= SUSTAINED_TARGET and s["all_received"]),
        ]
    )
    by_round = ", ".join(f"{x or 0:,.0f}" for x in s["by_round"])
    rows.append(_detail("  each round (median shown)", by_round))
    rows.append(
        _detail(
            "  first to last arrival (load included)",
            f"{s['first_to_last_per_s'] or 0:,.0f}/s",
            f"server CPU {s['server_cpu_pct']:.0f}%, worker {s['worker_cpu_pct']:.0f}%",
        )
    )
    lat = w["latency"]
    rows.append(
        [
            f"webhooks: 201 -> receiver, {lat['achieved_rate']:.0f} of "
            f"{lat['target_rate']:.0f} events/s",
            f"p50 {lat['p50_ms']} / p95 {lat['p95_ms']} / p99 {lat['p99_ms']} ms",
            f"p50 {lat['p50_ms'] / LATENCY_TARGET_MS:.2f} x target",
            f"p50 <= {LATENCY_TARGET_MS} ms",
            _pf(lat["p50_ms"] <= LATENCY_TARGET_MS and lat["all_received"]),
        ]
    )
    rows.append(
        _detail(
            "  the POST itself (send to 201)",
            f"p50 {lat['post_p50_ms']} / p99 {lat['post_p99_ms']} ms",
            f"server CPU {lat['server_cpu_pct']:.0f}%",
        )
    )
    i = w["ingest"]
    without, with_endpoint = i["without"]["events_per_s"], i["with"]["events_per_s"]
    rows.append(
        [
            "webhooks: single-event ingest, endpoint on (c=32)",
            f"{with_endpoint:,.0f} events/s",
            f"{i['ratio']:.2f} x without ({without:,.0f})",
            f">= {INGEST_TARGET} x without",
            _pf(i["ratio"] >= INGEST_TARGET),
        ]
    )
    by_round = ", ".join(f"{x:.2f}" for x in i["by_round"])
    rows.append(_detail("  ratio in each round (median shown)", by_round))
    rows.append(
        _detail(
            "  server CPU per event, without -> with (delivery included)",
            f"{i['cpu_us_per_event_without']} -> {i['cpu_us_per_event_with']} us",
            f"{i['cpu_ratio_median']:.2f} x (median round)",
        )
    )
    rows.append(
        _detail(
            "  worker process CPU per delivery (WEBHOOK_WORKER=process)",
            f"{i['worker_cpu_us_per_delivery']} us",
        )
    )
    share = i["delivered_during_run"] / max(i["expected"], 1)
    rows.append(
        _detail(
            "  delivered during the run, rest drained in",
            f"{share:.0%} ({i['delivered_during_run_per_s']:,.0f}/s), {i['drained_after_s']} s",
            f"server CPU {i['server_cpu_pct_with']:.0f}%",
        )
    )
    faults = [
        f"{name}: {x['missing']} missing, {x['duplicates']} duplicated, "
        f"{x['bad_signatures']} badly signed"
        for name, x in (("8a", s), ("8b", lat), ("8c", i))
        if x["missing"] or x["duplicates"] or x["bad_signatures"]
    ]
    rows.append(
        ["  deliveries missing, duplicated, badly signed", "; ".join(faults) or "none", "", "", ""]
    )
    return rows


def report(w: dict) -> None:
    print(markdown_table(["figure", "value", "ratio", "target", "result"], report_rows(w)))
