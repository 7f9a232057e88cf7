"""The operators' commands under `flask --app wsgi …`, through Flask's CLI runner."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from ingest.extensions import db
from ingest.models import WebhookDelivery
from tests.receivers import Receiver
from tests.support import create_tenant, post_events


def test_webhooks_commands_are_registered_with_help(app):
    result = app.test_cli_runner().invoke(args=["webhooks", "--help"])
    assert result.exit_code == 0
    assert "worker" in result.output and "prune" in result.output
    worker_help = app.test_cli_runner().invoke(args=["webhooks", "worker", "--help"])
    assert "WEBHOOK_WORKER=off" in worker_help.output


def test_prune_removes_old_finished_deliveries(make_app):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True)
    client = app.test_client()
    tenant = create_tenant(client, "acme")
    receiver = Receiver()
    try:
        client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=tenant["headers"])
        post_events(client, tenant, {"type": "t"}, {"type": "t"})
        app.extensions["webhook_worker"].run_once()
        with app.app_context():
            db.session.execute(
                update(WebhookDelivery).values(created_at=datetime.now(UTC) - timedelta(days=40))
            )
            db.session.commit()
        result = app.test_cli_runner().invoke(args=["webhooks", "prune"])
        assert result.exit_code == 0 and result.output == "Removed 2 deliveries.\n"
    finally:
        receiver.close()
