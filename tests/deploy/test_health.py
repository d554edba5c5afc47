"""/health under real uWSGI: 200 with Redis up (token present or not), 503 with Redis down, never a traceback."""

from __future__ import annotations

import json
import time

import redis
import requests

from devstack.processes import free_port
from tests.conftest import TEST_APPID
from token_service.store import Credential, TokenStore


def test_health_reports_redis_reachable_and_no_token_as_healthy(start_app, redis_client: redis.Redis) -> None:
    app = start_app()
    response = requests.get(app.url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    report = response.json()
    assert report["status"] == "ok" and report["app"] == "up"
    assert report["redis"]["reachable"] is True
    assert report["token"]["present"] is False
    assert "token_service run" in report["token"]["detail"]


def test_health_shows_token_age_remaining_life_and_last_errcode_but_not_the_token(
    start_app, redis_client: redis.Redis
) -> None:
    store = TokenStore(redis_client, TEST_APPID)
    now = time.time()
    assert store.acquire_lock("test-owner", 30)
    credential = Credential("SECRET-TOKEN-VALUE", now - 100, now + 7100, "stable")
    assert store.write("access_token", "test-owner", credential, 60)
    store.record_error("access_token", 40164, "invalid ip 203.0.113.9, not in whitelist")
    app = start_app()
    response = requests.get(app.url + "/health", timeout=5)
    assert response.status_code == 200
    token = response.json()["token"]
    assert token["present"] is True
    assert 99 <= token["age_seconds"] <= 102
    assert 7097 <= token["remaining_seconds"] <= 7100
    assert token["source"] == "stable"
    assert token["last_errcode"] == "40164"  # the code, for the operator; the text may name the server's IP
    assert "SECRET-TOKEN-VALUE" not in response.text
    assert "203.0.113.9" not in response.text


def test_health_answers_503_quickly_when_redis_is_unreachable(start_app) -> None:
    app = start_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    response = requests.get(app.url + "/health", timeout=5)
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unhealthy" and report["app"] == "up"
    assert report["redis"] == {"reachable": False, "error": "ConnectionError"}
    assert "Traceback" not in response.text + app.process.log_text()


def get_from(url: str, source: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """GET from another loopback address: the app sees a visitor, not the server itself."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5, source_address=(source, 0))
    try:
        connection.request("GET", parts.path, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_health_shows_a_visitor_only_up_or_down_and_the_details_to_the_health_token(start_app) -> None:
    token = "health-token-for-monitors-0001"
    app = start_app(HEALTH_TOKEN=token)
    assert get_from(app.url + "/health", "127.0.0.2") == (200, {"status": "ok"})
    assert get_from(app.url + "/health", "127.0.0.2", {"X-Health-Token": "wrong-token-000000000"}) == (
        200, {"status": "ok"}
    )
    status, report = get_from(app.url + "/health", "127.0.0.2", {"X-Health-Token": token})
    assert status == 200 and report["redis"]["reachable"] is True and "token" in report


def test_health_shows_a_visitor_only_down_when_redis_is_unreachable(start_app) -> None:
    app = start_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert get_from(app.url + "/health", "127.0.0.2") == (503, {"status": "unhealthy"})
