"""`python wsgi.py` plus POST /bench/echo, for an app without the BENCH_ROUTES hook.

The ceiling must run on the same server stack and process settings as the real
routes, so this imports wsgi (which monkey-patches first and builds the app), adds
the one trivial route, and serves exactly as `python wsgi.py` does. ingest.py uses it
only when `python wsgi.py` with BENCH_ROUTES=1 answers /bench/echo with a 404.
"""

import sys
from pathlib import Path

# Nothing may import socket or threading before wsgi has monkey-patched.
sys.path[:1] = [str(Path(__file__).resolve().parents[2])]

import wsgi  # noqa: E402


def echo():
    from flask import request

    request.get_data()
    return {"ok": True}


if not any(rule.rule == "/bench/echo" for rule in wsgi.app.url_map.iter_rules()):
    wsgi.app.add_url_rule("/bench/echo", "bench_echo", echo, methods=["POST"])

if __name__ == "__main__":
    wsgi.serve()
