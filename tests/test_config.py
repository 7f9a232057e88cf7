"""Settings come from the environment, with defaults and validation."""

import pytest

from ingest.config import ConfigError, load_config


def test_defaults(tmp_path):
    config = load_config(str(tmp_path), env={})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'ingest.db'}"
    assert config["TENANT_RATE_LIMIT_DEFAULT"] == "6000/minute"
    assert config["AUTH_FAILURE_RATE_LIMIT"] == "60/minute"
    assert config["MAX_CONTENT_LENGTH"] == 5 * 1024 * 1024
    assert config["CORS_ORIGINS"] == ["*"]
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["ADMIN_TOKEN_GENERATED"] and len(config["ADMIN_TOKEN"]) >= 32
    assert config["SOCKETIO_ASYNC_MODE"] == "eventlet"


def test_postgres_urls_get_the_eventlet_friendly_driver(tmp_path):
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        config = load_config(str(tmp_path), env={"DATABASE_URL": url})
        assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://u@h/db"
        assert config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 10
        assert config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"] is True


def test_redis_url_switches_limiter_and_queue(tmp_path):
    config = load_config(str(tmp_path), env={"REDIS_URL": "redis://localhost:6379/0"})
    assert config["RATELIMIT_STORAGE_URI"] == "failover+redis://localhost:6379/0"
    assert config["SOCKETIO_MESSAGE_QUEUE"] == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    "env",
    [
        {"PORT": "eighty"},
        {"RATELIMIT_DEFAULT": "lots"},
        {"MAX_CONTENT_LENGTH": "-1"},
        {"SOCKETIO_ASYNC_MODE": "gevent-ish"},
        {"SQLITE_SYNCHRONOUS": "OFF; DROP TABLE x"},
        {"SECRET_KEY": "short"},
        # Past what a request may ask for; a far larger one failed rotations with a 500.
        {"KEY_ROTATION_GRACE_S": str(365 * 86400 + 1)},
        {"DEFAULT_RETENTION_DAYS": "999999999"},
        {"CREDENTIAL_CHECK_MS": "5"},
    ],
)
def test_malformed_settings_are_refused_with_their_name(tmp_path, env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        load_config(str(tmp_path), env=env)


def test_a_boolean_setting_that_is_neither_true_nor_false_is_refused(tmp_path):
    import pytest

    from ingest.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="GROUP_COMMIT"):
        load_config(str(tmp_path), {"GROUP_COMMIT": "enabled", "ADMIN_TOKEN": "a" * 32})
    assert load_config(str(tmp_path), {"GROUP_COMMIT": "off"})["GROUP_COMMIT"] is False


def test_the_webhook_worker_runs_beside_the_server_inline_or_not_at_all(tmp_path):
    import pytest

    from ingest.config import ConfigError, load_config

    def mode(value):
        env = {"ADMIN_TOKEN": "a" * 32} | ({"WEBHOOK_WORKER": value} if value else {})
        return load_config(str(tmp_path), env)["WEBHOOK_WORKER"]

    assert mode(None) == "process"
    assert [mode(v) for v in ("Inline", "off", "process")] == ["inline", "off", "process"]
    # The switch words of earlier versions.
    assert [mode(v) for v in ("1", "true", "0", "no")] == ["process", "process", "off", "off"]
    with pytest.raises(ConfigError, match="process, inline or off"):
        mode("enabled")
