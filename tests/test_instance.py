"""The instance folder: where DATA_DIR puts it, and the generated secrets it keeps."""

import os
import stat

import pytest

from ingest import create_app
from ingest.config import ConfigError, _create_kept_secret, data_dir, load_config


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generated_admin_token_is_kept_for_the_next_start(tmp_path):
    first = load_config(str(tmp_path), env={})
    second = load_config(str(tmp_path), env={})
    assert first["ADMIN_TOKEN_GENERATED"] and second["ADMIN_TOKEN_GENERATED"]
    assert first["ADMIN_TOKEN"] == second["ADMIN_TOKEN"]
    assert (tmp_path / "admin_token").read_text().strip() == first["ADMIN_TOKEN"]
    assert second["ADMIN_TOKEN_FILE"] == str(tmp_path / "admin_token")


def test_generated_secret_key_is_kept_for_the_next_start(tmp_path):
    first = load_config(str(tmp_path), env={})
    second = load_config(str(tmp_path), env={})
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert len(first["SECRET_KEY"]) >= 32
    assert first["SECRET_KEY"] != first["ADMIN_TOKEN"]


def test_kept_secrets_are_readable_by_their_owner_only(tmp_path, monkeypatch):
    # A permissive umask must not widen the files: they are created 0600, never chmod-ed later.
    old_umask = os.umask(0o000)
    try:
        load_config(str(tmp_path / "new-folder"), env={})
    finally:
        os.umask(old_umask)
    assert _mode(tmp_path / "new-folder" / "admin_token") == 0o600
    assert _mode(tmp_path / "new-folder" / "secret_key") == 0o600
    # Nothing else is left behind (no temporary files from the atomic creation).
    assert sorted(p.name for p in (tmp_path / "new-folder").iterdir()) == [
        "admin_token",
        "secret_key",
    ]


def test_explicit_admin_token_and_secret_key_win_and_write_nothing(tmp_path):
    (tmp_path / "admin_token").write_text("an-older-generated-token\n")
    env = {"ADMIN_TOKEN": "from-the-environment", "SECRET_KEY": "k" * 32}
    config = load_config(str(tmp_path / "empty"), env=env)
    assert config["ADMIN_TOKEN"] == "from-the-environment"
    assert config["SECRET_KEY"] == "k" * 32
    assert not config["ADMIN_TOKEN_GENERATED"] and not config["SECRET_KEY_GENERATED"]
    assert config["ADMIN_TOKEN_FILE"] is None
    assert not (tmp_path / "empty").exists()
    assert load_config(str(tmp_path), env=env)["ADMIN_TOKEN"] == "from-the-environment"


def test_a_kept_secret_key_too_short_is_refused(tmp_path):
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError, match="secret_key"):
        load_config(str(tmp_path), env={})


def test_an_emptied_admin_token_file_is_refused(tmp_path):
    (tmp_path / "admin_token").write_text("\n")
    with pytest.raises(ConfigError, match="admin_token"):
        load_config(str(tmp_path), env={})


def test_an_instance_folder_that_cannot_be_made_falls_back_to_a_token_for_this_run(tmp_path):
    # A path under a regular file cannot become a folder, even for root.
    (tmp_path / "a-file").write_text("")
    config = load_config(str(tmp_path / "a-file" / "instance"), env={})
    assert config["ADMIN_TOKEN_GENERATED"] and len(config["ADMIN_TOKEN"]) >= 32
    assert config["ADMIN_TOKEN_FILE"] is None


def test_a_secret_another_process_kept_first_wins(tmp_path):
    # Two processes starting together: the second one's link fails and it reads the first's.
    (tmp_path / "admin_token").write_text("kept-by-the-other-process\n")
    assert _create_kept_secret(tmp_path / "admin_token") == "kept-by-the-other-process"
    assert [p.name for p in tmp_path.iterdir()] == ["admin_token"]


def test_data_dir_is_made_absolute_and_unset_means_flasks_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data_dir({"DATA_DIR": "data"}) == str(tmp_path / "data")
    assert data_dir({}) is None
    assert data_dir({"DATA_DIR": ""}) is None


def test_create_app_keeps_database_and_token_in_data_dir(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "ADMIN_TOKEN", "SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SOCKETIO_ASYNC_MODE", "threading")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("SOCKETIO_MESSAGE_QUEUE", raising=False)
    first, second = create_app(), create_app()
    assert first.instance_path == str(tmp_path / "data")
    assert first.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'data' / 'ingest.db'}"
    assert first.config["ADMIN_TOKEN"] == second.config["ADMIN_TOKEN"]
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert _mode(tmp_path / "data" / "admin_token") == 0o600
