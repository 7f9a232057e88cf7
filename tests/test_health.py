"""GET /health: ok, degraded when Redis is away, 503 when the database is."""


def test_health_ok(client):
    for path in ("/health", "/api/v1/health"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.get_json()["status"] == "ok"
        assert response.get_json()["checks"]["database"] == "ok"


def test_health_degraded_when_redis_is_unreachable(make_app):
    client = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "unavailable"},
    }


def test_health_503_when_database_is_unreachable(make_app, tmp_path):
    client = make_app(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing/dir/x.db"
    ).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "unavailable"


def test_api_calls_answer_503_when_database_is_unreachable(make_app, tmp_path):
    from tests.support import ADMIN_TOKEN

    client = make_app(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing/dir/x.db"
    ).test_client()
    response = client.get("/api/v1/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    response = client.get("/api/v1/events", headers={"X-API-Key": "ik_whatever"})
    assert response.status_code == 503
