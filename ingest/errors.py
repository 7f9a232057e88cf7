"""Typed API errors and the one place that renders every error as the JSON envelope."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("ingest.errors")


class ApiError(Exception):
    """An error the client can act on; rendered as ``{"error": {code, message, details?}}``."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: object | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class ValidationError(ApiError):
    status, code = 400, "validation_error"


class AuthenticationFailed(ApiError):
    status, code = 401, "authentication_failed"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class TenantDisabled(Forbidden):
    code = "tenant_disabled"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


# werkzeug's own HTTP errors, mapped onto the envelope's codes.
_HTTP_CODES = {
    400: "validation_error",
    401: "authentication_failed",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}

_HTTP_MESSAGES = {
    404: "No such resource. The API lives under /api/v1.",
    413: "The request body is larger than the server accepts.",
}


def error_response(status: int, code: str, message: str, details=None, headers=None):
    body: dict = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_api_error(error: ApiError):
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def _handle_http_error(error: HTTPException):
    status = error.code or 500
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    message = _HTTP_MESSAGES.get(status) or error.description or error.name
    headers = {}
    if status == 405 and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(status, code, message, headers=headers)


def database_unavailable(error: BaseException) -> bool:
    """Whether an error means the database is unreachable or overwhelmed, not the request."""
    return isinstance(error, OperationalError | PoolTimeoutError) or getattr(
        error, "connection_invalidated", False
    )


def _handle_database_error(error: Exception):
    if not database_unavailable(error):
        return _handle_unexpected(error)
    log.error("database unavailable request_id=%s: %s", g.get("request_id"), type(error).__name__)
    return error_response(503, "service_unavailable", "The database is unavailable; retry shortly.")


def _handle_unexpected(error: Exception):
    log.exception("unhandled error request_id=%s", g.get("request_id"), exc_info=error)
    return error_response(500, "internal_error", "Internal server error.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(DBAPIError, _handle_database_error)
    app.register_error_handler(PoolTimeoutError, _handle_database_error)
    app.register_error_handler(Exception, _handle_unexpected)
