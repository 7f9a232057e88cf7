"""A trivial JSON route, registered only with BENCH_ROUTES=1: the benchmark's ceiling.

It sits under /api/ so it runs through the same server, middleware (CORS, security
headers, request ids, access log) and JSON handling as every API route: `make bench`
reports ingest throughput as a fraction of what this stack does for a trivial route.
"""

from flask import Blueprint

from .payloads import read_json_object

bp = Blueprint("bench", __name__, url_prefix="/api/v1/bench")


@bp.post("/echo")
def echo():
    read_json_object()
    return {"ok": True}, 201
