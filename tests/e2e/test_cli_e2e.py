"""`flask --app wsgi events tail` (and import) as an operator runs them, against a real server."""

import json
import queue
import signal
import subprocess
import threading
import time
import uuid

import pytest

from .server import FLASK, ROOT, LiveServer

pytestmark = pytest.mark.e2e


class Lines:
    """A stream's lines, read on a thread of their own, waited for with a deadline."""

    def __init__(self, stream):
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))

    def until(self, condition, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not (self.seen and condition(self.seen[-1])):
            try:
                self.seen.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"timed out; lines so far: {self.seen}") from None
        return self.seen


class Tail:
    """`flask --app wsgi events tail` following a server, once it says it follows."""

    def __init__(self, server: LiveServer, tenant_id: int, *types: str):
        options = [option for name in types for option in ("--type", name)]
        self.process = subprocess.Popen(
            [*FLASK, "events", "tail", "--tenant", str(tenant_id), "--url", server.url, *options],
            cwd=ROOT,
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out, self.err = Lines(self.process.stdout), Lines(self.process.stderr)
        self.err.until(lambda line: line.startswith("Following tenant"))

    def events_until(self, event_id: str) -> list[dict]:
        return [json.loads(line) for line in self.out.until(lambda line: event_id in line)]

    def interrupt(self) -> int:
        """Ctrl+C; its exit status."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def tails():
    started: list[Tail] = []

    def start(server: LiveServer, tenant_id: int, *types: str) -> Tail:
        started.append(Tail(server, tenant_id, *types))
        return started[-1]

    yield start
    for tail in started:
        tail.kill()


def _stored(server: LiveServer, tenant: dict, ids: set[str]) -> list[dict]:
    """The tenant's events with these ids as the API shows them, in storage order."""
    listed = server.admin("GET", "/api/v1/events", headers={"X-API-Key": tenant["api_key"]})
    return [event for event in reversed(listed.json()["data"]) if event["id"] in ids]


def test_tail_prints_the_tenants_new_events_of_the_types_asked(live_server_factory, tails):
    server = live_server_factory()
    acme = server.create_tenant("acme")
    globex = server.create_tenant("globex")
    tail = tails(server, acme["id"], "order.created", "order.done")

    assert server.post_events(globex["api_key"], [{"id": "g1", "type": "order.created"}]).ok
    posted = [
        {"id": "o1", "type": "order.created", "metadata": {"total": 9.5}},
        {"id": "p1", "type": "order.paid"},
        {"id": "o2", "type": "order.created", "timestamp": "2026-01-01T00:00:00Z"},
    ]
    assert server.post_events(acme["api_key"], posted).ok
    assert server.post_events(acme["api_key"], [{"id": "done", "type": "order.done"}]).ok
    printed = tail.events_until('"done"')

    assert tail.interrupt() == 0
    # Each as the API shows it, in storage order; nothing of other types or tenants.
    assert printed == _stored(server, acme, {"o1", "o2", "done"})


def test_tail_sees_what_an_import_in_another_process_stores(
    live_server_factory, shared_redis_url, tails, tmp_path
):
    # The import's process publishes through the message queue, as another node would.
    channel = f"ingest-test-{uuid.uuid4().hex}"
    server = live_server_factory(REDIS_URL=shared_redis_url, SOCKETIO_CHANNEL=channel)
    acme = server.create_tenant("acme")
    tail = tails(server, acme["id"])
    source = tmp_path / "events.ndjson"
    source.write_text("".join(json.dumps({"id": f"i{n}", "type": "t"}) + "\n" for n in range(3)))

    imported = subprocess.run(
        [*FLASK, "events", "import", "--tenant", str(acme["id"]), str(source)],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.stdout == "accepted 3, duplicates 0, rejected 0\n", imported.stderr

    assert tail.events_until('"i2"') == _stored(server, acme, {"i0", "i1", "i2"})
    assert tail.interrupt() == 0
