"""Bad input gets the envelope with an actionable message; never a 500 or a partial write."""

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support import post_events


def _post_raw(client, tenant, data, content_type="application/json"):
    return client.post(
        "/api/v1/events", data=data, headers={**tenant["headers"], "Content-Type": content_type}
    )


def _error(response, status, code="validation_error"):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def test_each_bad_field_is_named(client, tenant):
    cases = {
        "type": [
            {},
            {"type": ""},
            {"type": "x" * 101},
            {"type": "has space"},
            {"type": 5},
            # A trailing newline once passed: the pattern ended in "$", which matches before it.
            {"type": "page.view\n"},
        ],
        "id": [
            {"type": "a", "id": ""},
            {"type": "a", "id": "x" * 129},
            {"type": "a", "id": "a/b"},
            {"type": "a", "id": "order-1\n"},
        ],
        "metadata": [{"type": "a", "metadata": [1]}, {"type": "a", "metadata": "x"}],
        "timestamp": [
            {"type": "a", "timestamp": "soon"},
            {"type": "a", "timestamp": "2026-01-01T00:00:00"},
            {"type": "a", "timestamp": 1700000000},
        ],
        "surprise": [{"type": "a", "surprise": 1}],
    }
    for field, bodies in cases.items():
        for body in bodies:
            error = _error(client.post("/api/v1/events", json=body, headers=tenant["headers"]), 400)
            assert field in error["details"], (body, error)


def test_timestamp_more_than_an_hour_ahead_is_rejected(client, tenant):
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(minutes=50)).isoformat()
    late = (datetime.now(UTC) + timedelta(minutes=70)).isoformat()
    ok = client.post(
        "/api/v1/events", json={"type": "a", "timestamp": soon}, headers=tenant["headers"]
    )
    assert ok.status_code == 201
    bad = client.post(
        "/api/v1/events", json={"type": "a", "timestamp": late}, headers=tenant["headers"]
    )
    assert "future" in _error(bad, 400)["details"]["timestamp"][0]


def test_future_skew_is_configurable(make_app):
    from datetime import UTC, datetime, timedelta

    from tests.support import create_tenant

    client = make_app(MAX_FUTURE_SKEW_SECONDS=0).test_client()
    tenant = create_tenant(client, "acme")
    ahead = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    response = client.post(
        "/api/v1/events", json={"type": "a", "timestamp": ahead}, headers=tenant["headers"]
    )
    assert response.status_code == 400


def test_metadata_size_and_depth_limits(client, tenant):
    big = {"blob": "x" * (64 * 1024)}
    error = _error(
        client.post(
            "/api/v1/events", json={"type": "a", "metadata": big}, headers=tenant["headers"]
        ),
        400,
    )
    assert "bytes" in error["details"]["metadata"][0]
    deep: dict = {}
    node = deep
    for _ in range(32):
        node["k"] = {}
        node = node["k"]
    error = _error(
        client.post(
            "/api/v1/events", json={"type": "a", "metadata": deep}, headers=tenant["headers"]
        ),
        400,
    )
    assert "deeper" in error["details"]["metadata"][0]
    shallow = {"a": {"b": [1, {"c": "d"}]}}
    assert (
        client.post(
            "/api/v1/events", json={"type": "a", "metadata": shallow}, headers=tenant["headers"]
        ).status_code
        == 201
    )


def test_nul_bytes_are_rejected_anywhere(client, tenant):
    for metadata in ({"k": "a\x00b"}, {"a\x00": 1}, {"list": ["ok", "\x00"]}):
        response = client.post(
            "/api/v1/events", json={"type": "a", "metadata": metadata}, headers=tenant["headers"]
        )
        assert "NUL" in _error(response, 400)["details"]["metadata"][0]


def test_nan_and_infinity_are_not_json(client, tenant):
    for raw in (
        '{"type": "a", "metadata": {"x": NaN}}',
        '{"type": "a", "metadata": {"x": -Infinity}}',
    ):
        _error(_post_raw(client, tenant, raw), 400)


def test_malformed_json_is_a_validation_error(client, tenant):
    for raw in ("{", "", "[1, 2]", '"text"', b"\xff\xfe", "[" * 100_000):
        _error(_post_raw(client, tenant, raw), 400)


def test_wrong_content_type_is_415(client, tenant):
    _error(
        _post_raw(client, tenant, "type=a", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    )
    response = client.post(
        "/api/v1/events/batch",
        data="x",
        headers={**tenant["headers"], "Content-Type": "text/plain"},
    )
    _error(response, 415, "unsupported_media_type")


def test_body_over_the_limit_is_413(make_app):
    from tests.support import create_tenant

    client = make_app(MAX_CONTENT_LENGTH=4096).test_client()
    tenant = create_tenant(client, "acme")
    response = client.post(
        "/api/v1/events",
        json={"type": "a", "metadata": {"x": "y" * 5000}},
        headers=tenant["headers"],
    )
    _error(response, 413, "payload_too_large")


def test_batch_items_of_the_wrong_shape(client, tenant):
    response = post_events(client, tenant, {"type": "a"}, 5, None, [])
    error = _error(response, 400)
    assert set(error["details"]) == {"1", "2", "3"}
    for body in ({"events": "nope"}, {"events": [{"type": "a"}], "extra": 1}, {}):
        _error(client.post("/api/v1/events/batch", json=body, headers=tenant["headers"]), 400)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.dictionaries(st.sampled_from(["type", "id", "metadata", "timestamp", "x"]), json_values)
)
def test_fuzzed_event_bodies_never_give_500(client, tenant, body):
    response = client.post("/api/v1/events", json=body, headers=tenant["headers"])
    assert response.status_code in (200, 201, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert response.get_json()["error"]["code"] == "validation_error"


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzzed_raw_bodies_never_give_500(client, tenant, raw):
    for path, content_type in (
        ("/api/v1/events", "application/json"),
        ("/api/v1/events/batch", "application/x-ndjson"),
    ):
        response = client.post(
            path, data=raw, headers={**tenant["headers"], "Content-Type": content_type}
        )
        assert response.status_code in (200, 201, 400), response.get_data(as_text=True)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.dictionaries(
        st.sampled_from(["type", "q", "since", "until", "limit", "cursor"]), st.text(max_size=30)
    )
)
def test_fuzzed_queries_never_give_500(client, tenant, params):
    for path in ("/api/v1/events", "/api/v1/events/stats", "/api/v1/events/timeseries"):
        response = client.get(path, query_string=params, headers=tenant["headers"])
        assert response.status_code in (200, 400), (path, params, response.get_data(as_text=True))


def test_valid_events_round_trip_exactly(client, tenant):
    metadata = {"unicode": "naïve ☃", "nested": {"list": [1, 2.5, None, True]}, "big": 2**62}
    event = client.post(
        "/api/v1/events", json={"type": "a", "metadata": metadata}, headers=tenant["headers"]
    ).get_json()
    listed = client.get("/api/v1/events", headers=tenant["headers"]).get_json()["data"][0]
    assert event["metadata"] == metadata == listed["metadata"]
    assert json.loads(json.dumps(listed)) == listed


@settings(max_examples=200, deadline=None)
@given(document=json_values)
def test_size_bound_is_never_below_the_real_size(document):
    from marshmallow import ValidationError

    from ingest.schemas import check_json_document

    try:
        bound = check_json_document(document, max_depth=1000)
    except ValidationError:
        assume(False)  # NUL bytes and infinities are refused before size matters
    real = len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())
    assert bound >= real


def test_metadata_just_over_the_limit_is_measured_exactly(make_app):
    from tests.support import create_tenant

    client = make_app(MAX_METADATA_BYTES=100).test_client()
    tenant = create_tenant(client, "acme")
    fits = {"k": "é" * 45}  # {"k":"…"} is 8 + 90 bytes: under the limit, over the bound
    over = {"k": "é" * 47}
    assert (
        client.post(
            "/api/v1/events", json={"type": "a", "metadata": fits}, headers=tenant["headers"]
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/api/v1/events", json={"type": "a", "metadata": over}, headers=tenant["headers"]
        ).status_code
        == 400
    )
