"""ingest/serving.py's start-up probe of the eventlet internals it relies on."""

from ingest import serving


def test_the_probe_accepts_the_pinned_eventlet():
    assert serving.probe() is True


def test_the_probe_refuses_a_request_body_that_lost_what_it_reads(monkeypatch):
    monkeypatch.delattr(serving.eventlet.wsgi.Input, "discard")
    assert serving.probe() is False
