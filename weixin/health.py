"""GET /health for monitors: the app answers, Redis is reachable, and how old token_service's access_token is.

HTTP 200 while Redis answers (a missing token is reported, not a failure), 503 when it does not. The public
sees only that status (`{"status": "ok"}`); the details (Redis latency, token age, WeChat's last errcode)
need a request from the server itself (127.0.0.1, ::1) or the HEALTH_TOKEN in an `X-Health-Token` header.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

import redis
import web

from token_service.store import ACCESS_TOKEN, TokenStore
from weixin.config import redact_url

log = logging.getLogger("weixin.health")

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
# The server's own address: `curl http://127.0.0.1/health` on the host shows everything. Other loopback
# addresses (127.0.0.2, ...) count as the public, which lets the tests play a remote monitor.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1"})


def token_report(store: TokenStore, now: float) -> dict[str, Any]:
    """The stored access_token's age and remaining life (never the token itself)."""
    credential = store.read(ACCESS_TOKEN)
    meta = store.meta(ACCESS_TOKEN)
    report: dict[str, Any] = {"present": credential is not None}
    if credential is not None:
        report["age_seconds"] = round(now - credential.fetched_at)
        report["remaining_seconds"] = round(credential.remaining(now))
        report["source"] = credential.source
    else:
        report["detail"] = "no access_token in Redis: is `python -m token_service run` running?"
    # The error text stays out of a public page (it may name the server's IP); the code says enough.
    if meta.get("last_errcode") is not None or meta.get("last_error"):
        report["last_errcode"] = meta.get("last_errcode") or None
        report["last_error_seconds_ago"] = round(now - float(meta.get("last_error_at") or now))
    return report


def health_report(client: redis.Redis, appid: str, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON document): 200 while Redis answers, 503 when it does not."""
    now = time.time() if now is None else now
    report: dict[str, Any] = {"status": "ok", "app": "up"}
    started = time.perf_counter()
    try:
        client.ping()
        report["redis"] = {"reachable": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
        if appid:
            report["token"] = token_report(TokenStore(client, appid), now)
        else:
            report["token"] = {"present": False, "detail": "WECHAT_APPID is not set"}
    except redis.RedisError as error:
        report["status"] = "unhealthy"
        report["redis"] = {"reachable": False, "error": type(error).__name__}
        return 503, report
    return 200, report


def may_see_details(environ: dict[str, Any], health_token: str) -> bool:
    """A request from the server itself, or one carrying the configured HEALTH_TOKEN (constant-time)."""
    if environ.get("REMOTE_ADDR") in LOCAL_ADDRESSES:
        return True
    offered = environ.get("HTTP_X_HEALTH_TOKEN", "")
    return bool(health_token) and hmac.compare_digest(offered.encode(), health_token.encode())


def public_report(status: int) -> dict[str, Any]:
    """What anyone may see: up or down."""
    return {"status": "ok" if status == 200 else "unhealthy"}


class Health:
    """The web.py view for /health (index.py's URL map); the App comes from `web.ctx.app` (index.py)."""

    def GET(self) -> str:
        health_token = ""
        try:
            app = web.ctx.app
            settings = app.settings
            health_token = settings.health_token
            status, report = health_report(app.health_redis, settings.appid)
            if status != 200:
                log.warning("health: Redis at %s is unreachable", redact_url(settings.redis_url))
        except Exception:  # a monitor gets JSON, never a traceback
            log.exception("health check failed")
            status, report = 503, {"status": "unhealthy", "app": "up", "error": "health check failed; see the log"}
        if not may_see_details(web.ctx.env, health_token):
            report = public_report(status)
        web.ctx.status = "200 OK" if status == 200 else "503 Service Unavailable"
        web.header("Content-Type", JSON_CONTENT_TYPE)
        web.header("Cache-Control", "no-store")
        return json.dumps(report, ensure_ascii=False)
