"""Every error is the JSON envelope, including werkzeug's own and unexpected ones."""

import logging

import pytest


def _envelope(response, status, code):
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_unknown_api_route_is_404_for_every_method(client):
    for method in ("get", "post", "put", "delete"):
        _envelope(getattr(client, method)("/api/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/api/v1/events")
    _envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


@pytest.fixture
def failing_app(make_app):
    app = make_app()

    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError("SELECT secret FROM somewhere")

    return app


def test_unexpected_error_is_500_without_internals(failing_app, caplog):
    client = failing_app.test_client()
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/boom", headers={"X-Request-ID": "req-123"})
    error = _envelope(response, 500, "internal_error")
    assert "SELECT" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "details" not in error
    assert any("req-123" in record.getMessage() for record in caplog.records)


def test_bench_route_exists_only_in_bench_mode(make_app):
    assert make_app().test_client().post("/api/v1/bench/echo", json={}).status_code == 404
    bench = make_app(BENCH_ROUTES=True).test_client()
    assert bench.post("/api/v1/bench/echo", json={"x": 1}).get_json() == {"ok": True}
