"""Webhook delivery end to end: real servers and workers, a real receiver on 127.0.0.1.

At least once through a SIGKILL, exactly once from two healthy nodes, a worker process
of its own, retries on the configured schedule, and a hung receiver that leaves another
endpoint's deliveries on time.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy
from sqlalchemy import func, select, update
from standardwebhooks import Webhook

from ingest.config import normalise_database_url
from ingest.models import PENDING, WebhookDelivery, utcnow
from tests.receivers import Receiver

from .server import FLASK, ROOT, LiveServer

# Receivers here are on loopback; workers look for work every 100 ms, not 500.
# The worker as it ships: a process beside each server.
SETTINGS = {"WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_POLL_MS": "100", "WEBHOOK_WORKER": "process"}
deliveries = WebhookDelivery.__table__


# --- receivers (tests/receivers.py) -----------------------------------------------------------


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.gate.set()
        receiver.close()


def _counts(receiver: Receiver) -> Counter[str]:
    """How many times each webhook-id arrived."""
    return Counter(receiver.ids())


# --- the sender of events ----------------------------------------------------------------------


class Producer(threading.Thread):
    """Posts events to one server, a batch then a few single events in turn, and keeps
    the ids its 201 (or, for a single event stored before, 200) answers acknowledge.

    A post that gets no answer (the server is down) or a 503 is sent again until it is
    answered: the ids are the client's, so an event stored before is not stored twice.
    """

    def __init__(self, url: str, api_key: str, events: list[dict], batch=45, singles=5, pause=0.0):
        super().__init__(daemon=True)
        self.url, self.api_key, self.events = url, api_key, events
        self.batch, self.singles, self.pause = batch, singles, pause
        self.acked: list[str] = []
        self.resent = 0
        self.error: str | None = None

    def run(self) -> None:
        session = requests.Session()
        session.headers["X-API-Key"] = self.api_key
        try:
            start = 0
            while start < len(self.events):
                batch = self.events[start : start + self.batch]
                singles = self.events[start + self.batch : start + self.batch + self.singles]
                start += self.batch + self.singles
                self._post(session, "/api/v1/events/batch", {"events": batch}, "ids")
                for event in singles:
                    self._post(session, "/api/v1/events", event, "id")
                time.sleep(self.pause)
        except Exception as error:
            self.error = repr(error)
        finally:
            session.close()

    def _post(self, session: requests.Session, path: str, body: dict, ids: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = session.post(self.url + path, json=body, timeout=10)
            except requests.RequestException:
                response = None
            if response is not None and response.status_code in (200, 201):
                answered = response.json()[ids]
                self.acked.extend(answered if isinstance(answered, list) else [answered])
                return
            if response is not None and response.status_code != 503:
                raise AssertionError(f"{path}: {response.status_code} {response.text[:300]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: no answer for 60 s")
            self.resent += 1
            time.sleep(0.05)


# --- helpers -----------------------------------------------------------------------------------


def _events(prefix: str, count: int) -> list[dict]:
    return [
        {"type": "order.created", "id": f"{prefix}-{n:05d}", "metadata": {"n": n}}
        for n in range(count)
    ]


def _tenant(server: LiveServer) -> dict:
    # A per-minute limit no run here reaches: these tests are about delivery, not limits.
    return server.create_tenant("acme", rate_limit=10_000_000)


def _endpoint(server: LiveServer, api_key: str, url: str, **fields) -> dict:
    """A new endpoint as the API shows it, with its secret."""
    response = requests.post(
        server.url + "/api/v1/webhooks",
        json={"url": url, **fields},
        headers={"X-API-Key": api_key},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def _deliveries(server: LiveServer, api_key: str, endpoint: dict, **params) -> list[dict]:
    response = requests.get(
        f"{server.url}/api/v1/webhooks/{endpoint['id']}/deliveries",
        params={"limit": 200, **params},
        headers={"X-API-Key": api_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _settled(server: LiveServer, api_key: str, endpoint: dict) -> bool:
    """No delivery is pending: every send has been answered and its outcome recorded."""
    try:
        return not _deliveries(server, api_key, endpoint, status="pending", limit=1)
    except requests.ConnectionError as error:
        exited = server.process.poll()
        raise AssertionError(
            f"server exit code {exited}; its log:\n{server.log()[-3000:]}"
        ) from error


def _senders(receiver: Receiver, processes: dict[str, int]) -> Counter[str]:
    """How many arrivals each of ``processes`` (name: pid) sent, told by the keep-alive
    connections it holds to the receiver (Linux's /proc); "unknown" for one closed since."""
    inodes = {}  # socket inode -> its local port, for connections to the receiver
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{receiver.port:04X}"):
            inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    owners = {}
    for name, pid in processes.items():
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                target = os.readlink(descriptor)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    owners[inodes[target[8:-1]]] = name
    return Counter(owners.get(arrival.client_port, "unknown") for arrival in receiver.requests)


def _wait_until(condition, timeout: float, progress) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s: {progress()}")
        time.sleep(0.05)


def _missing(acked: set[str], receiver: Receiver):
    return lambda: f"{len(acked - _counts(receiver).keys())} of {len(acked)} have not arrived"


def _verify_signatures(receiver: Receiver, secret: str) -> None:
    verifier = Webhook(secret)
    for arrival in receiver.requests:
        message = verifier.verify(arrival.body, arrival.headers)
        assert message["data"]["id"] == arrival.webhook_id


@pytest.fixture
def report(capsys):
    """A line in the terminal whatever the test's outcome (counts worth seeing in CI logs)."""

    def write(line: str) -> None:
        with capsys.disabled():
            print(line)

    return write


def _engine(database_url: str):
    return sqlalchemy.create_engine(normalise_database_url(database_url))


def _leases(database_url: str) -> tuple[int, object]:
    """How many deliveries are held under a lease (claimed, outcome not written), and
    when the last of those leases ends."""
    engine = _engine(database_url)
    try:
        with engine.connect() as connection:
            return tuple(
                connection.execute(
                    select(func.count(), func.max(deliveries.c.next_attempt_at)).where(
                        deliveries.c.status == PENDING, deliveries.c.claim.is_not(None)
                    )
                ).one()
            )
    finally:
        engine.dispose()


def _end_leases(database_url: str) -> None:
    """What waiting the leases out would do: their deliveries come due now."""
    engine = _engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(deliveries)
                .where(deliveries.c.status == PENDING, deliveries.c.claim.is_not(None))
                .values(next_attempt_at=utcnow())
            )
    finally:
        engine.dispose()


# --- tests -------------------------------------------------------------------------------------


def test_every_acknowledged_event_arrives_after_a_sigkill_mid_run(
    live_server_factory, fresh_database, receivers, report
):
    """At least once: a server killed while it stores events and sends deliveries, then
    restarted on the same database, delivers every event it acknowledged."""
    database_url = fresh_database()
    # A slow receiver: deliveries are in flight, and queued behind them, at the kill.
    receiver = receivers(delay=0.02)
    server = live_server_factory(database_url=database_url, WEBHOOK_TIMEOUT_S="1", **SETTINGS)
    key = _tenant(server)["api_key"]
    endpoint = _endpoint(server, key, receiver.url)
    producer = Producer(server.url, key, _events("k", 5000), pause=0.02)
    started = time.monotonic()
    producer.start()

    _wait_until(
        lambda: len(producer.acked) >= 2000 and receiver.in_flight > 0,
        timeout=30,
        progress=lambda: f"{len(producer.acked)} acknowledged, {receiver.in_flight} in flight",
    )
    server.kill()
    killed_at = utcnow()
    acked_before, arrived_before = len(producer.acked), len(receiver.requests)

    held, lease_ends = _leases(database_url)
    assert held > 0, "no delivery was held under a lease when the server was killed"
    # WEBHOOK_TIMEOUT_S=1 makes the lease 1 x (4 + 1) + 30 = 35 s; the killed worker's
    # deliveries would come due again by then. Rather than wait, the test ends the leases
    # in the database (the server is down, so nothing else holds them).
    assert lease_ends <= killed_at + timedelta(seconds=35 + 1)
    _end_leases(database_url)
    receiver.delay = 0
    server.start(migrate=False)

    producer.join(timeout=60)
    assert not producer.is_alive() and producer.error is None, producer.error
    acked = set(producer.acked)
    assert len(acked) == 5000
    _wait_until(lambda: acked <= _counts(receiver).keys(), 60, _missing(acked, receiver))
    _wait_until(lambda: _settled(server, key, endpoint), 30, lambda: "deliveries still pending")

    counts = _counts(receiver)
    duplicates = sum(counts.values()) - len(counts)
    report(
        f"\nwebhooks SIGKILL ({database_url.split(':')[0]}): killed after {acked_before} "
        f"acknowledged / {arrived_before} arrived with {held} leased; {len(acked)} "
        f"acknowledged, {sum(counts.values())} arrivals, {duplicates} duplicate(s), "
        f"{producer.resent} post(s) resent, {time.monotonic() - started:.1f} s"
    )
    assert set(counts) == acked
    # Sent twice: only what the killed worker had sent without recording it.
    assert duplicates <= held
    _verify_signatures(receiver, endpoint["secret"])


def test_two_nodes_deliver_every_event_exactly_once(
    live_server_factory, postgres_database, receivers, report
):
    """Two servers on one PostgreSQL database, each with its worker, share one endpoint's
    deliveries: healthy workers never send the same attempt twice."""
    receiver = receivers()
    nodes = [live_server_factory(database_url=postgres_database, **SETTINGS) for _ in range(2)]
    key = _tenant(nodes[0])["api_key"]
    endpoint = _endpoint(nodes[0], key, receiver.url)
    events = _events("n", 5000)
    started = time.monotonic()
    producers = [Producer(node.url, key, events[i::2]) for i, node in enumerate(nodes)]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join(timeout=60)
        assert not producer.is_alive() and producer.error is None, producer.error
    acked = {event_id for producer in producers for event_id in producer.acked}
    assert len(acked) == 5000

    _wait_until(lambda: acked <= _counts(receiver).keys(), 60, _missing(acked, receiver))
    _wait_until(lambda: _settled(nodes[1], key, endpoint), 30, lambda: "deliveries pending")
    counts = _counts(receiver)
    sent = _senders(receiver, {"A": nodes[0].worker_pid(), "B": nodes[1].worker_pid()})
    report(
        f"\nwebhooks two nodes: {sum(counts.values())} arrivals of {len(acked)} events "
        f"in {time.monotonic() - started:.1f} s, sent by node {dict(sent)}"
    )
    assert set(counts) == acked
    assert {event_id: n for event_id, n in counts.items() if n > 1} == {}
    # Both workers took part: the endpoint's deliveries were shared, not all one node's.
    assert sent["A"] > 0 and sent["B"] > 0


@pytest.fixture
def worker_processes(tmp_path):
    """Start `flask --app wsgi webhooks worker` with a server's settings; stopped after."""
    started: list[subprocess.Popen] = []

    def start(server: LiveServer) -> subprocess.Popen:
        with open(tmp_path / f"worker-{len(started)}.log", "w") as log:
            worker = [*FLASK, "webhooks", "worker"]
            started.append(
                subprocess.Popen(worker, cwd=ROOT, env=server.env, stdout=log, stderr=log)
            )
        return started[-1]

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_worker_process_delivers_what_a_server_without_a_worker_queued(
    live_server_factory, receivers, worker_processes
):
    receiver = receivers()
    server = live_server_factory(**{**SETTINGS, "WEBHOOK_WORKER": "off"})
    key = _tenant(server)["api_key"]
    endpoint = _endpoint(server, key, receiver.url)
    events = _events("w", 60)
    assert server.post_events(key, events[:50]).status_code == 201
    for event in events[50:]:
        response = requests.post(
            server.url + "/api/v1/events", json=event, headers={"X-API-Key": key}, timeout=10
        )
        assert response.status_code == 201, response.text

    # The server alone sends nothing: a worker in it would have been woken by the events
    # at once, and five of its poll intervals pass.
    time.sleep(0.5)
    assert receiver.requests == []
    queued = _deliveries(server, key, endpoint)
    assert len(queued) == 60
    assert {(d["status"], d["attempts"]) for d in queued} == {("pending", 0)}

    worker = worker_processes(server)
    ids = {event["id"] for event in events}
    _wait_until(lambda: ids <= _counts(receiver).keys(), 30, _missing(ids, receiver))
    _wait_until(lambda: _settled(server, key, endpoint), 30, lambda: "deliveries pending")
    assert worker.poll() is None
    assert _counts(receiver) == Counter(ids)
    assert _senders(receiver, {"worker": worker.pid, "server": server.process.pid}) == Counter(
        worker=len(ids)
    )
    _verify_signatures(receiver, endpoint["secret"])

    # Each body is the event exactly as GET /api/v1/events shows it.
    stored = requests.get(
        server.url + "/api/v1/events", params={"limit": 100}, headers={"X-API-Key": key}, timeout=10
    ).json()["data"]
    bodies = {arrival.webhook_id: json.loads(arrival.body) for arrival in receiver.requests}
    assert bodies == {
        event["id"]: {"type": event["type"], "timestamp": event["timestamp"], "data": event}
        for event in stored
    }
    recorded = _deliveries(server, key, endpoint)
    assert {(d["status"], d["attempts"], d["last_status_code"]) for d in recorded} == {
        ("succeeded", 1, 200)
    }


def test_failed_attempts_are_retried_on_the_configured_schedule(live_server_factory, receivers):
    receiver = receivers()
    server = live_server_factory(WEBHOOK_RETRY_SCHEDULE="0.5,1", **SETTINGS)
    key = _tenant(server)["api_key"]
    endpoint = _endpoint(server, key, receiver.url)
    events = _events("r", 20)
    ids = {event["id"] for event in events}
    # The first attempts (one claim, sent at once) fail; the retries, 0.5 s on, succeed.
    receiver.answers.extend([500] * len(events))
    assert server.post_events(key, events).status_code == 201

    _wait_until(lambda: _settled(server, key, endpoint), 30, lambda: "deliveries pending")
    assert _counts(receiver) == Counter({event_id: 2 for event_id in ids})
    arrived: dict[str, list[float]] = {}
    for arrival in receiver.requests:
        arrived.setdefault(arrival.webhook_id, []).append(arrival.at)
    # 0.5 s after the failure, less the schedule's 10 % jitter.
    assert min(second - first for first, second in arrived.values()) >= 0.45
    recorded = _deliveries(server, key, endpoint)
    assert {(d["status"], d["attempts"], d["last_status_code"]) for d in recorded} == {
        ("succeeded", 2, 200)
    }


def test_a_hanging_receiver_does_not_hold_up_another_endpoint(live_server_factory, receivers):
    """On a live eventlet server: sends that wait on a receiver that never answers take
    their endpoint's slots only; another endpoint's deliveries go out meanwhile."""
    hanging = receivers()
    hanging.gate.clear()  # its requests wait until the test ends
    quick = receivers()
    server = live_server_factory(WEBHOOK_TIMEOUT_S="20", WEBHOOK_CONCURRENCY="5", **SETTINGS)
    key = _tenant(server)["api_key"]
    _endpoint(server, key, hanging.url)
    _endpoint(server, key, quick.url)
    events = _events("h", 100)
    ids = {event["id"] for event in events}
    posted = time.monotonic()
    assert server.post_events(key, events).status_code == 201

    _wait_until(lambda: hanging.in_flight == 5, 10, lambda: f"{hanging.in_flight} hanging")
    _wait_until(lambda: ids <= _counts(quick).keys(), 10, _missing(ids, quick))
    # Well within one WEBHOOK_TIMEOUT_S: nothing waited for a hung send to time out.
    assert max(arrival.at for arrival in quick.requests) - posted < 10
    assert hanging.in_flight == 5
    assert requests.get(server.url + "/health", timeout=2).status_code == 200


# --- the worker beside the server (WEBHOOK_WORKER=process) -------------------------------------


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_worker_beside_the_server_is_told_of_new_events_and_restarted_if_it_dies(
    live_server_factory, receivers
):
    """The server's commits reach its worker process at once (its poll is 10 s here), the
    worker sends, not the server, and a worker that dies is replaced."""
    receiver = receivers()
    server = live_server_factory(**{**SETTINGS, "WEBHOOK_POLL_MS": "10000"})
    key = _tenant(server)["api_key"]
    endpoint = _endpoint(server, key, receiver.url)
    worker = server.worker_pid()

    def send_and_wait(prefix: str) -> set[str]:
        events = _events(prefix, 20)
        ids = {event["id"] for event in events}
        assert server.post_events(key, events).status_code == 201
        # Well within one poll: the worker was told.
        _wait_until(lambda: ids <= _counts(receiver).keys(), 5, _missing(ids, receiver))
        return ids

    first = send_and_wait("a")
    assert _senders(receiver, {"worker": worker, "server": server.process.pid}) == Counter(
        worker=len(first)
    )
    # Where cores are short, ingestion goes first: the worker is niced, the server not.
    assert (_niceness(server.process.pid), _niceness(worker)) == (0, 10)
    # Recorded before the kill (or they would be sent again when their lease ends).
    _wait_until(lambda: _settled(server, key, endpoint), 10, lambda: "deliveries pending")

    os.kill(worker, 9)
    _wait_until(
        lambda: len(server.group_pids()) == 2 and worker not in server.group_pids(),
        10,
        lambda: f"processes {server.group_pids()}",
    )
    second = send_and_wait("b")
    assert _counts(receiver) == Counter(first | second)
    assert "the webhook worker process exited" in server.log()
    _wait_until(lambda: _settled(server, key, endpoint), 10, lambda: "deliveries pending")
    _verify_signatures(receiver, endpoint["secret"])


def test_a_stopped_server_s_worker_sends_what_it_holds_then_exits(live_server_factory, receivers):
    """SIGTERM to the server alone: its worker sees it go, finishes the sends it has
    started (the receiver answers them 1 s late), records them, and exits."""
    receiver = receivers(delay=1.0)
    server = live_server_factory(WEBHOOK_TIMEOUT_S="5", LOG_LEVEL="INFO", **SETTINGS)
    key = _tenant(server)["api_key"]
    endpoint = _endpoint(server, key, receiver.url)
    events = _events("s", 5)
    assert server.post_events(key, events).status_code == 201
    _wait_until(lambda: receiver.in_flight == 5, 5, lambda: f"{receiver.in_flight} in flight")

    server.process.terminate()
    server.process.wait(timeout=10)
    _wait_until(lambda: not server.group_pids(), 10, lambda: f"left {server.group_pids()}")
    assert "the server stopped: sending what is claimed" in server.log()
    assert _counts(receiver) == Counter(event["id"] for event in events)

    server.start(migrate=False)
    recorded = _deliveries(server, key, endpoint)
    assert {(d["status"], d["attempts"]) for d in recorded} == {("succeeded", 1)}


def test_the_worker_beside_a_threading_mode_server_delivers(live_server_factory, receivers):
    """SOCKETIO_ASYNC_MODE=threading: the server's request threads notify the worker, and
    the worker (threads too) delivers."""
    receiver = receivers()
    server = live_server_factory(mode="threading", **{**SETTINGS, "WEBHOOK_POLL_MS": "10000"})
    key = _tenant(server)["api_key"]
    endpoint = _endpoint(server, key, receiver.url)
    ids = set()
    for n in range(20):
        event = {"type": "t", "id": f"threaded-{n}"}
        response = requests.post(
            server.url + "/api/v1/events", json=event, headers={"X-API-Key": key}, timeout=10
        )
        assert response.status_code == 201
        ids.add(event["id"])
    _wait_until(lambda: ids <= _counts(receiver).keys(), 5, _missing(ids, receiver))
    _wait_until(lambda: _settled(server, key, endpoint), 10, lambda: "deliveries pending")
    _verify_signatures(receiver, endpoint["secret"])
