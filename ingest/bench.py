"""A trivial JSON route, registered only with BENCH_ROUTES=1: the benchmark's ceiling.

It runs through the same server, middleware and JSON handling as the real API, so
`make bench` can report ingest throughput as a fraction of what this stack can do.
"""

from flask import Blueprint

from .payloads import read_json_object

bp = Blueprint("bench", __name__, url_prefix="/bench")


@bp.post("/echo")
def echo():
    read_json_object()
    return {"ok": True}, 201
