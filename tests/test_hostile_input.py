"""Hostile input from the loopback attack (issue 12): each gets a clean 4xx, never a 500."""

import base64
import gzip
import io
import json

import pytest

from ingest.extensions import socketio

SURROGATE_VALUE = '{"type": "p", "metadata": {"s": "\\ud800"}}'
SURROGATE_KEY = '{"type": "p", "metadata": {"\\udfff": 1}}'


def _post_event_text(client, tenant, text, **headers):
    return client.post(
        "/api/v1/events",
        data=text.encode(),
        headers={**tenant["headers"], "Content-Type": "application/json", **headers},
    )


def _error(response, status, code="validation_error"):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    return error


@pytest.mark.parametrize(
    "body",
    [
        SURROGATE_VALUE,
        SURROGATE_KEY,
        '{"type": "p", "metadata": {"list": ["ok", "\\ud83d"]}}',
        '{"type": "p", "timestamp": "0001-01-01T00:00:00+01:00"}',
        '{"type": "p", "timestamp": "9999-12-31T23:59:59-01:00"}',
        '{"type": "p", "metadata": {"n": 9223372036854775808}}',
        '{"type": "p", "metadata": {"n": -9223372036854775808}}',
        '{"type": "p", "metadata": {"deep": [[[123456789012345678901234567890]]]}}',
    ],
)
def test_unstorable_events_are_refused_with_400_and_nothing_is_stored(client, tenant, body):
    _error(_post_event_text(client, tenant, body), 400)
    assert client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"] == []


def test_the_largest_64_bit_integers_and_surrogate_pairs_are_kept(client, tenant):
    body = '{"type": "p", "metadata": {"max": 9223372036854775807, "min": -9223372036854775807, "emoji": "\\ud83d\\ude00"}}'  # noqa: E501
    response = _post_event_text(client, tenant, body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["metadata"] == {
        "max": 2**63 - 1,
        "min": -(2**63 - 1),
        "emoji": "\N{GRINNING FACE}",
    }


def test_a_surrogate_in_a_batch_names_its_item(client, tenant):
    text = '{"events": [{"type": "ok"}, {"type": "p", "metadata": {"s": "\\ud800"}}]}'
    response = client.post(
        "/api/v1/events/batch",
        data=text,
        headers={**tenant["headers"], "Content-Type": "application/json"},
    )
    error = _error(response, 400)
    assert list(error["details"]) == ["1"]
    assert "surrogate" in json.dumps(error["details"])


def test_a_surrogate_in_a_tenant_name_is_refused(client, admin_headers):
    response = client.post(
        "/api/v1/tenants",
        data='{"name": "\\ud800"}',
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert "name" in _error(response, 400)["details"]


@pytest.mark.parametrize(
    "query",
    [
        "type=a%00b",
        "q=a%00b",
        "since=9999-12-31T23:59:59-01:00",
        "until=0001-01-01T00:00:00%2B01:00",
        "since=2026-01-01T00:00:00",
        "cursor=" + base64.urlsafe_b64encode(b"v1:9223372036854775808").decode().rstrip("="),
        "cursor=" + base64.urlsafe_b64encode(b"v1:99999999999999999999999").decode(),
        "cursor=" + base64.urlsafe_b64encode(b"v1:0").decode(),
    ],
)
def test_bad_list_parameters_are_400(client, tenant, query):
    _error(client.get(f"/api/v1/events?{query}", headers=tenant["headers"]), 400)


@pytest.mark.parametrize("path", ["/api/v1/events/stats", "/api/v1/events/timeseries"])
def test_range_edges_of_reads_are_400_not_500(client, tenant, path):
    response = client.get(f"{path}?since=9999-12-31T23:59:59-01:00", headers=tenant["headers"])
    _error(response, 400)


def test_timeseries_ending_near_year_one_starts_at_year_one(client, tenant):
    response = client.get(
        "/api/v1/events/timeseries?until=0001-01-01T00:30:00%2B00:00", headers=tenant["headers"]
    )
    assert response.status_code == 200, response.get_json()
    buckets = response.get_json()["data"]
    assert len(buckets) == 30
    assert buckets[0]["start"].startswith("0001-01-01T00:00:00")


def test_timestamp_without_timezone_says_how_to_add_one(client, tenant):
    response = client.post(
        "/api/v1/events",
        json={"type": "a", "timestamp": "2026-11-30T12:00:00"},
        headers=tenant["headers"],
    )
    message = json.dumps(_error(response, 400)["details"])
    assert "Z" in message and "offset" in message


@pytest.mark.parametrize("suffix", ["9223372036854775808", "9223372036854775808/token"])
def test_tenant_ids_beyond_the_column_are_404(client, admin_headers, suffix):
    method = client.post if suffix.endswith("token") else client.get
    _error(method(f"/api/v1/tenants/{suffix}", headers=admin_headers), 404, "not_found")


def test_a_compressed_body_is_415_naming_content_encoding(client, tenant):
    response = client.post(
        "/api/v1/events/batch",
        data=gzip.compress(b'{"events": [{"type": "a"}]}'),
        headers={
            **tenant["headers"],
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert "Content-Encoding" in _error(response, 415, "unsupported_media_type")["message"]


def test_a_trailing_slash_reaches_the_same_routes(client, tenant):
    posted = client.post("/api/v1/events/", json={"type": "a"}, headers=tenant["headers"])
    assert posted.status_code == 201
    listed = client.get("/api/v1/events/", headers=tenant["headers"])
    assert [e["type"] for e in listed.get_json()["data"]] == ["a"]


# --- NDJSON and big batches ------------------------------------------------------------------


class CountingStream(io.BytesIO):
    """A request body that records how much of it the server read."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def _post_ndjson_stream(client, tenant, data: bytes):
    stream = CountingStream(data)
    response = client.post(
        "/api/v1/events/batch",
        input_stream=stream,
        content_length=len(data),
        headers={**tenant["headers"], "Content-Type": "application/x-ndjson"},
    )
    return response, stream


def test_ndjson_reading_stops_at_the_first_line_past_the_limit(client, tenant):
    data = b'{"type": "a"}\n' * 300_000  # ~4 MiB
    response, stream = _post_ndjson_stream(client, tenant, data)
    error = _error(response, 400)
    assert "more than 1000" in error["message"]
    assert stream.bytes_read < 200_000, "the server read the whole body"
    assert client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"] == []


def test_refused_batches_are_charged_to_the_rate_limit(make_app):
    from tests.support import create_tenant

    app = make_app()
    client = app.test_client()
    tenant = create_tenant(client, "acme", rate_limit=1500)
    response, _ = _post_ndjson_stream(client, tenant, b"{}\n" * 5000)
    assert response.status_code == 400
    # 1001 lines were read and charged: 499 of the 1500 per minute are left.
    assert response.headers["X-RateLimit-Remaining"] == "499"
    too_many = client.post(
        "/api/v1/events/batch",
        json={"events": [{"type": "a"}] * 500},
        headers=tenant["headers"],
    )
    assert too_many.status_code == 429


def test_a_tenant_with_no_budget_left_is_refused_before_its_body_is_read(make_app):
    from tests.support import create_tenant

    app = make_app()
    client = app.test_client()
    tenant = create_tenant(client, "acme", rate_limit=10)
    assert (
        client.post(
            "/api/v1/events/batch", json={"events": [{"type": "a"}] * 10}, headers=tenant["headers"]
        ).status_code
        == 201
    )
    response, stream = _post_ndjson_stream(client, tenant, b'{"type": "a"}\n' * 10)
    _error(response, 429, "rate_limited")
    assert stream.bytes_read == 0


def test_an_ndjson_line_longer_than_any_event_is_refused_unread(client, tenant):
    line = b'{"type": "a", "metadata": {"s": "' + b"x" * 600_000 + b'"}}\n'
    response, stream = _post_ndjson_stream(client, tenant, line * 3)
    assert "longer than" in _error(response, 400)["message"]
    assert stream.bytes_read < len(line) * 2


def test_a_large_json_batch_is_read_event_by_event_with_the_same_answers(client, tenant):
    events = [{"type": "big", "id": f"e{i}", "metadata": {"pad": "x" * 900}} for i in range(400)]
    text = json.dumps({"events": events}, indent=1)  # ~400 KiB, spaces and newlines included
    response = client.post(
        "/api/v1/events/batch",
        data=text,
        headers={**tenant["headers"], "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["ids"] == [f"e{i}" for i in range(400)]


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"events": [' + "{}," * 2000 + "{}]}", "more than 1000"),
        ('{"events": [' + '{"type": "a"},' * 500 + "oops]}", "Event 500"),
        ('{"other": 1, "events": [' + '{"type": "a"},' * 30_000 + "{}]}", '{"events": [...]}'),
    ],
)
def test_large_json_batches_that_break_the_rules_are_400(client, tenant, text, message):
    text = text + " " * 300_000  # larger than one event can be: read event by event
    response = client.post(
        "/api/v1/events/batch",
        data=text,
        headers={**tenant["headers"], "Content-Type": "application/json"},
    )
    assert message in _error(response, 400)["message"]


# --- Socket.IO replay ------------------------------------------------------------------------


@pytest.mark.parametrize("last_event_id", ["\ud800", "x" * 5000, "a\x00b", "evt_/../"])
def test_a_malformed_last_event_id_gets_a_truncated_replay_and_stays_connected(
    app, client, tenant, last_event_id
):
    client.post("/api/v1/events", json={"type": "kept"}, headers=tenant["headers"])
    socket_client = socketio.test_client(
        app,
        auth={"api_key": tenant["api_key"], "last_event_id": last_event_id},
        flask_test_client=client,
    )
    assert socket_client.is_connected()
    received = []
    for _ in range(500):
        received += socket_client.get_received()
        if any(m["name"] == "replay_complete" for m in received):
            break
        socketio.sleep(0.01)
    complete = [m["args"][0] for m in received if m["name"] == "replay_complete"]
    assert complete == [{"count": 1, "truncated": True}]
    assert socket_client.is_connected()


def test_megabytes_of_blank_ndjson_lines_are_refused_and_charged_per_line(make_app):
    from tests.support import create_tenant

    app = make_app()
    client = app.test_client()
    tenant = create_tenant(client, "acme", rate_limit=5000)
    response, stream = _post_ndjson_stream(client, tenant, b"\n" * 5_000_000)
    assert "blank lines" in _error(response, 400)["message"]
    assert stream.bytes_read < 200_000, "the server read the whole body"
    assert int(response.headers["X-RateLimit-Remaining"]) <= 5000 - 1001


def test_timeseries_buckets_before_1970_match_the_buckets_listed(client, tenant):
    for stamp in ("1969-12-31T23:58:30Z", "1969-12-31T23:59:30Z"):
        client.post(
            "/api/v1/events", json={"type": "a", "timestamp": stamp}, headers=tenant["headers"]
        )
    response = client.get(
        "/api/v1/events/timeseries?since=1969-12-31T23:58:00Z&until=1970-01-01T00:00:00Z",
        headers=tenant["headers"],
    )
    assert [b["count"] for b in response.get_json()["data"]] == [1, 1]


def test_a_timeseries_starting_after_now_is_400(client, tenant):
    response = client.get(
        "/api/v1/events/timeseries?since=9999-12-31T23:00:00Z", headers=tenant["headers"]
    )
    _error(response, 400)


def test_a_doubled_slash_is_a_json_404_not_an_html_redirect(client, tenant):
    _error(client.get("/api/v1/events//stats", headers=tenant["headers"]), 404, "not_found")


def test_a_batch_of_another_media_type_is_told_both_accepted_forms(client, tenant):
    response = client.post(
        "/api/v1/events/batch",
        data='{"type": "a"}\n',
        headers={**tenant["headers"], "Content-Type": "text/plain"},
    )
    message = _error(response, 415, "unsupported_media_type")["message"]
    assert "application/json" in message and "application/x-ndjson" in message
