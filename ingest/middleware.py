"""Per-request cross-cutting concerns: request ids, security headers, the access log."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from flask import Flask, g, request

access_log = logging.getLogger("ingest.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# An API key pasted into a path (DELETE …/keys/<the whole key> instead of its prefix):
# the log keeps what a prefix shows, never the rest.
_KEY_IN_PATH = re.compile(r"(ik_[A-Za-z0-9_-]{9})[A-Za-z0-9_-]+")


def _start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    # A client-chosen id is echoed only if it is safe to put in a log line.
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex


def _finish_request(response):
    response.headers["X-Request-ID"] = g.get("request_id", "")
    if access_log.isEnabledFor(logging.INFO):
        _log_access(response.status_code)
    return response


def _log_access(status: int) -> None:
    # Path only: query strings may carry credentials (Socket.IO's ?api_key=).
    started = g.get("started")
    access_log.info(
        json.dumps(
            {
                "method": request.method,
                "path": _KEY_IN_PATH.sub(r"\1…", request.path),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)
                if started
                else None,
                "tenant": g.get("tenant_id"),
                "request_id": g.get("request_id"),
            }
        )
    )


def init_app(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)


_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
_HSTS = ("Strict-Transport-Security", "max-age=31536000")
# Answers that are about one caller (and may carry its data): never kept by a cache.
_NO_STORE = ("Cache-Control", "no-store")
_NO_STORE_PATHS = ("/api/", "/socket.io/")


class SecurityHeaders:
    """WSGI layer that adds the security headers to every response the app has not set.

    It wraps the Socket.IO middleware too (create_app puts it outside), so Engine.IO's
    own answers, such as the long-polling handshake, carry them like the API's.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        extra = list(_SECURITY_HEADERS)
        if environ.get("wsgi.url_scheme") == "https":
            extra.append(_HSTS)
        if environ.get("PATH_INFO", "").startswith(_NO_STORE_PATHS):
            extra.append(_NO_STORE)

        def start_with_headers(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers.extend(h for h in extra if h[0].lower() not in present)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_headers)
