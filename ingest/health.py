"""Health endpoint for load balancers and operators."""

from flask import Blueprint, current_app
from sqlalchemy import text

from .extensions import db

bp = Blueprint("health", __name__)


def _database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception:
        db.session.rollback()
        return False


def _redis_ok(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@bp.get("/api/v1/health")
@bp.get("/health")
def health():
    checks = {"database": "ok" if _database_ok() else "unavailable"}
    redis_url = current_app.config["REDIS_URL"]
    if redis_url:
        checks["redis"] = "ok" if _redis_ok(redis_url) else "unavailable"
    if checks["database"] != "ok":
        return {"status": "unavailable", "checks": checks}, 503
    status = "ok" if all(value == "ok" for value in checks.values()) else "degraded"
    return {"status": status, "checks": checks}
