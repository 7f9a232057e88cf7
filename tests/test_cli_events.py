"""`flask --app wsgi events export|import`, through Flask's CLI runner."""

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from ingest.extensions import db, socketio
from ingest.models import WebhookDelivery
from ingest.services import imports
from ingest.services.events import export_events
from tests.support import create_tenant, post_events

EVENTS = [
    {
        "id": "order-1",
        "type": "order.created",
        "metadata": {"total": 99.5, "items": [{"sku": "A-1", "qty": 2}], "note": "café ☕"},
        "timestamp": "2026-01-02T03:04:05.123456+02:00",
    },
    {"id": "order-2", "type": "order.paid", "metadata": {"paid": True, "by": None}},
    {"type": "page.view", "metadata": {"path": "/"}, "timestamp": "2025-12-31T23:59:59Z"},
    {"id": "order-3", "type": "order.created", "timestamp": "2026-03-01T00:00:00Z"},
]


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def _without_received_at(events: list[dict]) -> list[dict]:
    # Set by the server on arrival: an import is a new arrival.
    return [{k: v for k, v in event.items() if k != "received_at"} for event in events]


def _ndjson(*events) -> str:
    return "".join(json.dumps(event) + "\n" for event in events)


def test_export_writes_the_api_format_oldest_first(cli, client, tenant):
    assert post_events(client, tenant, *EVENTS).status_code == 201
    result = cli("events", "export", "--tenant", tenant["id"])
    assert result.exit_code == 0, result.output
    listed = client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"]
    assert _lines(result.stdout) == list(reversed(listed))  # the API lists newest first


def test_export_then_import_into_another_tenant_keeps_every_event(
    cli, client, tenant, other_tenant
):
    post_events(client, tenant, *EVENTS)
    exported = cli("events", "export", "--tenant", tenant["id"]).stdout

    result = cli("events", "import", "--tenant", other_tenant["id"], "-", input=exported)
    assert result.exit_code == 0, result.output
    assert result.stdout == "accepted 4, duplicates 0, rejected 0\n"
    again = cli("events", "export", "--tenant", other_tenant["id"]).stdout
    # Ids (generated ones too), types, metadata and timestamps, in the same order.
    assert _without_received_at(_lines(again)) == _without_received_at(_lines(exported))


def test_importing_again_stores_nothing_twice(cli, client, tenant, other_tenant):
    post_events(client, tenant, *EVENTS)
    exported = cli("events", "export", "--tenant", tenant["id"]).stdout
    cli("events", "import", "--tenant", other_tenant["id"], "-", input=exported)
    result = cli("events", "import", "--tenant", other_tenant["id"], "-", input=exported)
    assert result.exit_code == 0
    assert result.stdout == "accepted 0, duplicates 4, rejected 0\n"
    assert len(_lines(cli("events", "export", "--tenant", other_tenant["id"]).stdout)) == 4


def test_a_bad_line_is_rejected_alone_with_its_line_number(cli, tenant, tmp_path):
    source = tmp_path / "events.ndjson"
    source.write_text(
        _ndjson({"id": "good-1", "type": "a"})
        + "{not json\n"
        + "\n"  # blank lines are skipped, as in the batch API, but still counted
        + _ndjson({"metadata": {}}, {"type": "b", "colour": "red"}, {"id": "good-2", "type": "b"})
    )
    result = cli("events", "import", "--tenant", tenant["id"], source)
    assert result.exit_code == 1
    assert result.stdout == "accepted 2, duplicates 0, rejected 3\n"
    assert result.stderr.splitlines() == [
        "line 2: not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "line 4: type: Missing data for required field.",
        "line 5: colour: Unknown field.",
    ]
    exported = _lines(cli("events", "export", "--tenant", tenant["id"]).stdout)
    assert [event["id"] for event in exported] == ["good-1", "good-2"]


def test_a_line_longer_than_an_event_can_be_is_skipped_unread(make_app, tmp_path):
    app = make_app(MAX_METADATA_BYTES=100)  # lines up to 4 * 100 + 4096 bytes
    tenant = create_tenant(app.test_client(), "acme")
    source = tmp_path / "events.ndjson"
    huge = {"type": "a", "metadata": {"blob": "x" * 100_000}}
    source.write_text(_ndjson(huge, {"id": "after", "type": "a"}))
    result = app.test_cli_runner().invoke(
        args=["events", "import", "--tenant", str(tenant["id"]), str(source)]
    )
    assert result.stderr == "line 1: longer than 4496 bytes, more than an event can be\n"
    assert result.stdout == "accepted 1, duplicates 0, rejected 1\n"


def test_import_publishes_to_subscribers_and_queues_webhooks_like_the_api(make_app):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    hook = {"url": "http://127.0.0.1:9/hook"}
    assert client.post("/api/v1/webhooks", json=hook, headers=tenant["headers"]).status_code == 201
    subscriber = socketio.test_client(
        app, auth={"api_key": tenant["api_key"]}, flask_test_client=client
    )
    result = app.test_cli_runner().invoke(
        args=["events", "import", "--tenant", str(tenant["id"]), "-"],
        input=_ndjson({"id": "i1", "type": "a"}, {"id": "i2", "type": "b"}),
    )
    assert result.exit_code == 0, result.output
    pushed = [m["args"][0]["id"] for m in subscriber.get_received() if m["name"] == "event"]
    assert pushed == ["i1", "i2"]
    with app.app_context():
        queued = db.session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert queued == 2
    subscriber.disconnect()


def test_import_into_a_missing_tenant_is_an_error_message(cli):
    result = cli("events", "import", "--tenant", 999, "-", input=_ndjson({"type": "a"}))
    assert result.exit_code == 1 and result.output == "Error: No tenant with id 999.\n"


def test_export_filters_by_time_and_type(cli, client, tenant):
    post_events(client, tenant, *EVENTS)

    def ids(*options):
        result = cli("events", "export", "--tenant", tenant["id"], *options)
        assert result.exit_code == 0, result.output
        return [event["id"] for event in _lines(result.stdout)]

    assert ids("--type", "order.created") == ["order-1", "order-3"]
    assert ids("--type", "order.created", "--type", "order.paid") == [
        "order-1",
        "order-2",
        "order-3",
    ]
    # order-1 is at 2026-01-02T01:04:05Z; since is inclusive, until exclusive.
    assert ids("--since", "2026-01-01T00:00:00Z", "--until", "2026-03-01T00:00:00Z") == ["order-1"]
    assert ids("--since", "2026-03-01T00:00:00Z", "--type", "order.created") == ["order-3"]
    assert ids("--until", "2026-01-01T00:00:00Z", "--type", "order.created") == []


def test_export_refuses_a_date_without_a_timezone(cli, tenant):
    result = cli("events", "export", "--tenant", tenant["id"], "--since", "2026-01-01")
    assert result.exit_code == 1
    assert "since: Add a timezone" in result.output and "Traceback" not in result.output


def test_export_reads_a_page_at_a_time_and_writes_every_event_in_order(make_app):
    app = make_app(EXPORT_BATCH=3)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    ids = [f"e{n:02d}" for n in range(10)]
    for start in range(0, 10, 4):  # several requests: storage order is arrival order
        post_events(client, tenant, *({"id": i, "type": "t"} for i in ids[start : start + 4]))

    with app.app_context():
        pages = export_events(tenant["id"], [], None, None, batch=3)
        assert [[event["id"] for event in page] for page in pages] == [
            ids[0:3],
            ids[3:6],
            ids[6:9],
            ids[9:],
        ]
    result = app.test_cli_runner().invoke(args=["events", "export", "--tenant", str(tenant["id"])])
    assert [event["id"] for event in _lines(result.stdout)] == ids


@pytest.mark.parametrize(
    ("command", "words"),
    [("export", "in storage order"), ("import", "rejected"), ("tail", "Ctrl+C")],
)
def test_every_events_command_explains_itself(cli, command, words):
    result = cli("events", command, "--help")
    assert result.exit_code == 0 and words in " ".join(result.output.split())


def test_an_import_stopped_by_the_database_says_how_far_it_got(make_app, monkeypatch):
    app = make_app(MAX_BATCH_EVENTS=2)
    tenant = create_tenant(app.test_client(), "acme")
    store = imports.ingest_events
    calls = []

    def fail_the_second_batch(tenant_id, items):
        calls.append(items)
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return store(tenant_id, items)

    monkeypatch.setattr(imports, "ingest_events", fail_the_second_batch)
    result = app.test_cli_runner().invoke(
        args=["events", "import", "--tenant", str(tenant["id"]), "-"],
        input=_ndjson(*({"id": f"e{n}", "type": "t"} for n in range(5))),
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "Stopped after line 2: accepted 2, duplicates 0, rejected 0\n"
        "Error: Database error: server closed the connection\n"
    )
