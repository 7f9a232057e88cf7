"""ingest/serving.py's start-up probe of the eventlet internals it relies on."""

import subprocess
import sys

from ingest import serving
from tests.e2e.server import ROOT


def test_the_probe_accepts_the_pinned_eventlet():
    assert serving.probe() is True


def test_the_probe_refuses_a_request_body_that_lost_what_it_reads(monkeypatch):
    monkeypatch.delattr(serving.eventlet.wsgi.Input, "discard")
    assert serving.probe() is False


def test_the_open_file_limit_is_raised_for_the_connections_allowed():
    program = (
        "import resource\n"
        "from ingest import serving\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))\n"
        "serving.raise_file_limit(1000)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 1256


def test_an_address_has_at_most_its_slots_and_gets_them_back():
    slots = serving.AddressSlots(2)
    assert [slots.take("a"), slots.take("a"), slots.take("a"), slots.take("b")] == [
        True,
        True,
        False,
        True,
    ]
    slots.give_back("a")
    assert slots.take("a")
    assert serving.AddressSlots(0).take("a")  # 0: no limit
