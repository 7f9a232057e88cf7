"""`flask --app wsgi tenants …` and `purge run`, through Flask's CLI runner."""

import re

import pytest

from tests.support import post_events


def _status(client, api_key: str) -> int:
    return client.get("/api/v1/tenants/me", headers={"X-API-Key": api_key}).status_code


def _created(output: str) -> tuple[int, str]:
    tenant_id = int(re.search(r"Created tenant (\d+)", output).group(1))
    api_key = re.search(r"^  (ik_\S+)$", output, re.MULTILINE).group(1)
    return tenant_id, api_key


def test_create_prints_the_id_and_a_key_that_works(make_app):
    # A server listening on every address is reached on this machine's loopback.
    app = make_app(HOST="0.0.0.0", PORT=8123)  # noqa: S104 - a setting, nothing binds
    client = app.test_client()
    result = app.test_cli_runner().invoke(args=["tenants", "create", "acme", "--rate-limit", "100"])
    assert result.exit_code == 0, result.output
    tenant_id, api_key = _created(result.output)
    me = client.get("/api/v1/tenants/me", headers={"X-API-Key": api_key}).get_json()
    assert me["tenant"]["id"] == tenant_id
    assert me["tenant"]["name"] == "acme" and me["tenant"]["rate_limit"] == 100
    assert f"curl -s http://127.0.0.1:8123/api/v1/events -H 'X-API-Key: {api_key}'" in result.output
    # Shown once: the list never shows it again.
    assert api_key not in app.test_cli_runner().invoke(args=["tenants", "list"]).output


def test_create_refuses_a_taken_name_with_a_message(cli, tenant):
    result = cli("tenants", "create", "ACME")
    assert result.exit_code == 1
    assert result.output == "Error: A tenant named 'ACME' already exists (names ignore case).\n"


def test_create_checks_its_fields_as_the_api_does(cli):
    result = cli("tenants", "create", "x" * 101, "--rate-limit", 0)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "name: Length must be between 1 and 100." in result.output
    assert "rate_limit: Must be greater than or equal to 1" in result.output


def test_list_shows_each_tenant_as_a_row(cli, client, admin_headers, tenant, other_tenant):
    client.patch(
        f"/api/v1/tenants/{other_tenant['id']}",
        json={"disabled": True, "retention_days": 30, "rate_limit": 60},
        headers=admin_headers,
    )
    lines = cli("tenants", "list").output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "RATE", "LIMIT", "RETENTION", "CREATED"]
    assert lines[1].split()[:5] == [str(tenant["id"]), "acme", "active", "default", "forever"]
    row = [str(other_tenant["id"]), "globex", "disabled", "60/minute", "30", "days"]
    assert lines[2].split()[:6] == row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", lines[1])


def test_list_with_no_tenants_says_how_to_make_one(cli):
    assert "tenants create NAME" in cli("tenants", "list").output


def test_rotate_key_with_no_grace_ends_the_old_key_at_once(cli, client, tenant):
    result = cli("tenants", "rotate-key", tenant["id"], "--grace", 0)
    assert result.exit_code == 0, result.output
    new_key = re.search(r"^  (ik_\S+)$", result.output, re.MULTILINE).group(1)
    assert "No other key works any more." in result.output
    assert _status(client, tenant["api_key"]) == 401
    assert _status(client, new_key) == 200


def test_rotate_key_says_until_when_the_old_key_works(cli, client, tenant):
    result = cli("tenants", "rotate-key", tenant["id"], "--grace", 3600)
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"The other keys work until:\n  {re.escape(tenant['api_key_prefix'])}…  "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n",
        result.output,
    )
    assert _status(client, tenant["api_key"]) == 200


def test_disable_refuses_the_tenants_key_and_enable_restores_it(cli, client, tenant):
    result = cli("tenants", "disable", tenant["id"])
    assert result.exit_code == 0 and result.output.startswith(f"Disabled tenant {tenant['id']}")
    assert _status(client, tenant["api_key"]) == 403
    result = cli("tenants", "enable", tenant["id"])
    assert result.output == f"Enabled tenant {tenant['id']} (acme).\n"
    assert _status(client, tenant["api_key"]) == 200


def test_delete_asks_first_and_keeps_the_tenant_when_told_no(cli, client, tenant):
    result = cli("tenants", "delete", tenant["id"], input="n\n")
    assert result.exit_code == 1
    assert "Delete tenant" in result.output and "Aborted!" in result.output
    assert _status(client, tenant["api_key"]) == 200


def test_delete_refuses_the_key_at_once_and_says_the_purge_follows(cli, client, tenant):
    result = cli("tenants", "delete", tenant["id"], "--yes")
    assert result.exit_code == 0, result.output
    assert "purged in the background" in result.output and "purge run" in result.output
    assert _status(client, tenant["api_key"]) == 401
    assert "deleting" in cli("tenants", "list").output


def test_purge_run_removes_a_deleted_tenant_and_its_events(cli, client, tenant, other_tenant):
    post_events(client, tenant, {"type": "a"}, {"type": "b"})
    post_events(client, other_tenant, {"type": "kept"})
    cli("tenants", "delete", tenant["id"], "--yes")
    result = cli("purge", "run")
    assert result.exit_code == 0, result.output
    assert result.output == f"Tenants removed: {tenant['id']}\nEvents removed: 2\n"
    assert str(tenant["id"]) not in cli("tenants", "list").output.split()
    assert cli("purge", "run").output == "Tenants removed: none\nEvents removed: 0\n"


@pytest.mark.parametrize(
    "args",
    [
        ["tenants", "rotate-key", 999],
        ["tenants", "disable", 999],
        ["tenants", "delete", 999, "--yes"],
        ["events", "export", "--tenant", 999],
        ["events", "tail", "--tenant", 999],
    ],
)
def test_a_missing_tenant_is_an_error_message(cli, args):
    result = cli(*args)
    assert result.exit_code == 1
    assert result.output == "Error: No tenant with id 999.\n"


def test_a_tenant_being_deleted_cannot_be_changed(cli, tenant):
    cli("tenants", "delete", tenant["id"], "--yes")
    result = cli("tenants", "enable", tenant["id"])
    assert result.exit_code == 1
    assert result.output == f"Error: Tenant {tenant['id']} is being deleted.\n"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("create", "shown this once"),
        ("list", "rate limit"),
        ("rotate-key", "KEY_ROTATION_GRACE_S"),
        ("disable", "refused"),
        ("enable", "back on"),
        ("delete", "purge run"),
    ],
)
def test_every_tenants_command_explains_itself(cli, command, words):
    result = cli("tenants", command, "--help")
    assert result.exit_code == 0 and words in " ".join(result.output.split())
