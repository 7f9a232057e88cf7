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


def _start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    # A client-chosen id is echoed only if it is safe to put in a log line.
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex


def _finish_request(response):
    response.headers["X-Request-ID"] = g.get("request_id", "")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
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
                "path": request.path,
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
