"""Every setting, read from the environment in one place, with defaults and validation."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from limits import parse as parse_rate_limit


class ConfigError(ValueError):
    """A setting in the environment is malformed."""


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    try:
        parse_rate_limit(value)
    except ValueError:
        raise ConfigError(f"{name} must look like '6000/minute', got {value!r}") from None
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: set[str]) -> str:
    value = env.get(name) or default
    if value.upper() in {a.upper() for a in allowed}:
        return next(a for a in allowed if a.upper() == value.upper())
    raise ConfigError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    # A typo ("enabled") must not quietly mean false: WEBHOOK_WORKER=enabled would stop
    # delivery.
    raise ConfigError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _worker_mode(env: Mapping[str, str]) -> str:
    """Where a server's webhook deliveries run: "process" (beside it), "inline" or "off".

    The switch words of earlier versions still work: on means the default, off off.
    """
    raw = (env.get("WEBHOOK_WORKER") or "process").strip().lower()
    if raw in {"process", "inline", "off"}:
        return raw
    try:
        return "process" if _bool(env, "WEBHOOK_WORKER", True) else "off"
    except ConfigError:
        raise ConfigError(
            "WEBHOOK_WORKER must be one of process, inline or off (or 1/true, 0/false), "
            f"got {env['WEBHOOK_WORKER']!r}"
        ) from None


def _seconds_list(env: Mapping[str, str], name: str, default: str) -> tuple[float, ...]:
    raw = env.get(name) or default
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be seconds separated by commas, got {raw!r}") from None
    if any(not 0 <= value <= 30 * 86400 for value in values):
        raise ConfigError(f"{name} must hold seconds between 0 and 30 days, got {raw!r}")
    return values


def normalise_database_url(url: str) -> str:
    """Pick the driver for URLs written the way users write them.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, whose C wait loop
    blocks every other greenlet under eventlet; psycopg2 cooperates.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def data_dir(env: Mapping[str, str] | None = None) -> str | None:
    """DATA_DIR, the instance folder, as an absolute path; None means Flask's default."""
    env = os.environ if env is None else env
    value = env.get("DATA_DIR")
    # Flask wants it absolute; a relative one is taken from the working directory.
    return os.path.abspath(value) if value else None


def _kept_secret(instance_path: str, name: str) -> tuple[str, str | None]:
    """A generated secret kept in the instance folder (0600) and its file; reused on restart.

    A folder that cannot keep it (read-only, say) gives a secret for this process only,
    as before, with a warning.
    """
    path = Path(instance_path) / name
    try:
        try:
            return _read_kept_secret(path), str(path)
        except FileNotFoundError:
            return _create_kept_secret(path), str(path)
    except OSError as error:
        logging.getLogger(__name__).warning(
            "Could not keep the generated %s in %s (%s); it lasts for this process only.",
            name,
            path,
            error,
        )
        return secrets.token_urlsafe(32), None


def _create_kept_secret(path: Path) -> str:
    """Write a new secret to ``path``, or read the one another process wrote first.

    The file appears whole and with mode 0600, or not at all: it is written under a
    temporary name and hard-linked into place, which fails if the name is taken.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, f"{value}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_kept_secret(path)
        return value
    finally:
        temporary.unlink()


def _read_kept_secret(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"{path} is empty; delete it to generate a new one")
    return value


def load_config(instance_path: str, env: Mapping[str, str] | None = None) -> dict:
    """Return the Flask config mapping built from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    database_url = normalise_database_url(
        env.get("DATABASE_URL") or f"sqlite:///{Path(instance_path) / 'ingest.db'}"
    )
    redis_url = env.get("REDIS_URL") or None
    is_sqlite = database_url.startswith("sqlite")

    # hide_parameters: a failed statement's values (webhook secrets, event metadata) stay
    # out of exception messages, and so out of the logs.
    engine_options: dict = {"pool_pre_ping": True, "hide_parameters": True}
    if not is_sqlite:
        engine_options.update(
            pool_size=_int(env, "DB_POOL_SIZE", 10, minimum=1),
            max_overflow=_int(env, "DB_MAX_OVERFLOW", 20),
            pool_recycle=_int(env, "DB_POOL_RECYCLE", 1800),
            pool_timeout=_int(env, "DB_POOL_TIMEOUT", 10, minimum=1),
        )

    admin_token = env.get("ADMIN_TOKEN") or ""
    secret_key = env.get("SECRET_KEY") or ""
    if secret_key and len(secret_key) < 32:
        # It signs the tenant JWTs (HS256): shorter keys are guessable offline.
        raise ConfigError("SECRET_KEY must be at least 32 characters")
    trusted_proxies = _int(env, "TRUSTED_PROXIES", 0)
    # Generated ones are kept in the instance folder, so a restart neither signs the
    # dashboard out nor invalidates tenant JWTs.
    admin_token_file = None
    if not admin_token:
        generated_token, admin_token_file = _kept_secret(instance_path, "admin_token")
    if not secret_key:
        generated_key, secret_key_file = _kept_secret(instance_path, "secret_key")
        if len(generated_key) < 32:
            raise ConfigError(f"{secret_key_file} must hold at least 32 characters")

    return {
        "HOST": env.get("HOST") or "127.0.0.1",
        "PORT": _int(env, "PORT", 5000, minimum=1),
        # The entry point prints a generated admin token (like Jupyter) so a new user can
        # sign in.
        "SECRET_KEY": secret_key or generated_key,
        "SECRET_KEY_GENERATED": not secret_key,
        "ADMIN_TOKEN": admin_token or generated_token,
        "ADMIN_TOKEN_GENERATED": not admin_token,
        "ADMIN_TOKEN_FILE": admin_token_file,
        "TOKEN_TTL_SECONDS": _int(env, "TOKEN_TTL_SECONDS", 900, minimum=1),
        # Verified credentials are cached this long. A change (key revoked, tenant disabled
        # or deleted) is forgotten at once on its node and, over Redis, on every other;
        # a node that cannot hear of it (no REDIS_URL, Redis away) follows within this.
        "CREDENTIAL_CACHE_SECONDS": _int(env, "CREDENTIAL_CACHE_SECONDS", 1),
        # How often each node checks its sockets' credentials against the database.
        "CREDENTIAL_CHECK_MS": _int(env, "CREDENTIAL_CHECK_MS", 1000, minimum=100),
        # Tenant lifecycle (ingest/services/tenants.py, ingest/lifecycle.py).
        # At most what a request may ask for (a year; schemas.KeyInSchema).
        "KEY_ROTATION_GRACE_S": _int(env, "KEY_ROTATION_GRACE_S", 86400, maximum=365 * 86400),
        "KEY_USAGE_FLUSH_S": _int(env, "KEY_USAGE_FLUSH_S", 30, minimum=1),
        # Keys a tenant may hold at once that are usable (active, or in a rotation's grace).
        "MAX_KEYS_PER_TENANT": _int(env, "MAX_KEYS_PER_TENANT", 10, minimum=1),
        # Keys revoked or expired longer ago than this are purged (GET …/keys lists them till then).
        "KEY_HISTORY_DAYS": _int(env, "KEY_HISTORY_DAYS", 90, minimum=1),
        # Keys made and revoked per tenant (the admin is not limited).
        "TENANT_KEY_CHANGES_LIMIT": _rate(env, "RATELIMIT_KEY_CHANGES", "60/hour"),
        "DEFAULT_RETENTION_DAYS": _int(env, "DEFAULT_RETENTION_DAYS", 0, maximum=36_500) or None,
        "PURGE_INTERVAL_S": _int(env, "PURGE_INTERVAL_S", 60),
        # 250 rows: ~3 ms of the write lock on SQLite, so others wait little (make bench step 9).
        "PURGE_BATCH": _int(env, "PURGE_BATCH", 250, minimum=1),
        # Events per read of `flask events export` (ingest/cli/events.py).
        "EXPORT_BATCH": _int(env, "EXPORT_BATCH", 1000, minimum=1),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "SQLITE_SYNCHRONOUS": _choice(
            env, "SQLITE_SYNCHRONOUS", "FULL", {"NORMAL", "FULL", "EXTRA"}
        ),
        "REDIS_URL": redis_url,
        "SOCKETIO_MESSAGE_QUEUE": env.get("SOCKETIO_MESSAGE_QUEUE") or redis_url,
        "SOCKETIO_CHANNEL": env.get("SOCKETIO_CHANNEL") or "ingest-socketio",
        "SOCKETIO_ASYNC_MODE": _choice(
            env, "SOCKETIO_ASYNC_MODE", "eventlet", {"eventlet", "threading"}
        ),
        "GROUP_COMMIT": _bool(env, "GROUP_COMMIT", True),
        "GROUP_COMMIT_MAX_EVENTS": _int(env, "GROUP_COMMIT_MAX_EVENTS", 5000, minimum=1),
        "SEARCH_INDEX_MERGE_MS": _int(env, "SEARCH_INDEX_MERGE_MS", 500),
        "REPLAY_LIMIT": _int(env, "REPLAY_LIMIT", 1000, minimum=1),
        # Named TENANT_* in Flask's config: Flask-Limiter reads RATELIMIT_DEFAULT itself and
        # would apply it to every route, keyed by IP.
        "TENANT_RATE_LIMIT_DEFAULT": _rate(env, "RATELIMIT_DEFAULT", "6000/minute"),
        "TENANT_READ_RATE_LIMIT": _rate(env, "RATELIMIT_READS", "1200/minute"),
        "AUTH_FAILURE_RATE_LIMIT": _rate(env, "RATELIMIT_AUTH_FAILURES", "60/minute"),
        # failover+redis: Redis, or process memory while Redis is away (ingest.ratelimits).
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI")
        or (f"failover+{redis_url}" if redis_url else "memory://"),
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX") or "ingest",
        "RATELIMIT_STRATEGY": "sliding-window-counter",
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        "CORS_ORIGINS": [o.strip() for o in (env.get("CORS_ORIGINS") or "*").split(",")],
        "TRUSTED_PROXIES": trusted_proxies,
        # Connections (ingest.serving, eventlet only). Idle Socket.IO connections cost
        # ~43 KiB each (make bench). Per address: a direct client's; behind a proxy every
        # client shares the proxy's address, so there the proxy must limit (off by default).
        "MAX_CONNECTIONS": _int(env, "MAX_CONNECTIONS", 5000, minimum=1),
        "MAX_CONNECTIONS_PER_ADDRESS": _int(
            env, "MAX_CONNECTIONS_PER_ADDRESS", 0 if trusted_proxies else 200
        ),
        # Socket.IO: an Engine.IO connection that has not joined the namespace (with its
        # credentials) by then is closed; sockets per tenant on one node.
        "SOCKETIO_JOIN_TIMEOUT_SECONDS": _int(env, "SOCKETIO_JOIN_TIMEOUT_SECONDS", 10, minimum=1),
        "MAX_SOCKETS_PER_TENANT": _int(env, "MAX_SOCKETS_PER_TENANT", 1000, minimum=1),
        # Slow clients (ingest.serving, eventlet only): a request's line and headers, and
        # each wait for more of its body.
        "REQUEST_HEADER_TIMEOUT_SECONDS": _int(
            env, "REQUEST_HEADER_TIMEOUT_SECONDS", 15, minimum=1
        ),
        "REQUEST_BODY_TIMEOUT_SECONDS": _int(env, "REQUEST_BODY_TIMEOUT_SECONDS", 60, minimum=1),
        # Tests force the public paths a failed start-up probe of eventlet's internals would
        # take (ingest/serving.py probe()).
        "EVENTLET_PUBLIC_PATHS_ONLY": _bool(env, "EVENTLET_PUBLIC_PATHS_ONLY", False),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 5 * 1024 * 1024, minimum=1024),
        "MAX_BATCH_EVENTS": _int(env, "MAX_BATCH_EVENTS", 1000, minimum=1),
        "MAX_METADATA_BYTES": _int(env, "MAX_METADATA_BYTES", 64 * 1024, minimum=2),
        "MAX_METADATA_DEPTH": _int(env, "MAX_METADATA_DEPTH", 32, minimum=1),
        "MAX_FUTURE_SKEW_SECONDS": _int(env, "MAX_FUTURE_SKEW_SECONDS", 3600),
        # Webhooks (ingest/services/webhooks.py, ingest/deliveries).
        "WEBHOOK_MAX_PER_TENANT": _int(env, "WEBHOOK_MAX_PER_TENANT", 20, minimum=1),
        "WEBHOOK_SECRET_GRACE_S": _int(env, "WEBHOOK_SECRET_GRACE_S", 86400),
        "WEBHOOK_TIMEOUT_S": _int(env, "WEBHOOK_TIMEOUT_S", 10, minimum=1),
        # Svix's schedule: the waits after each failed attempt, then the delivery fails.
        "WEBHOOK_RETRY_SCHEDULE": _seconds_list(
            env, "WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000"
        ),
        "WEBHOOK_DISABLE_AFTER_S": _int(env, "WEBHOOK_DISABLE_AFTER_S", 5 * 86400, minimum=1),
        "WEBHOOK_CONCURRENCY": _int(env, "WEBHOOK_CONCURRENCY", 10, minimum=1),
        "WEBHOOK_LOG_RETENTION_DAYS": _int(env, "WEBHOOK_LOG_RETENTION_DAYS", 30, minimum=1),
        # Receivers on loopback or private networks: for development and tests only.
        "WEBHOOK_ALLOW_PRIVATE": _bool(env, "WEBHOOK_ALLOW_PRIVATE", False),
        # Where a server's deliveries run: in a process it starts beside itself, in its own
        # process, or elsewhere (`flask --app wsgi webhooks worker`).
        "WEBHOOK_WORKER": _worker_mode(env),
        # How often a worker looks for work it was not told of: retries coming due, and
        # events stored by other nodes.
        "WEBHOOK_POLL_MS": _int(env, "WEBHOOK_POLL_MS", 500, minimum=10),
        "BENCH_ROUTES": _bool(env, "BENCH_ROUTES", False),
        "LOG_LEVEL": (env.get("LOG_LEVEL") or "INFO").upper(),
    }
