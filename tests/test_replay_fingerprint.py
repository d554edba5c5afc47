"""Issue 13, items 3 and 10: the signed triple (signature, timestamp, nonce) is bound to the first body it
came with, in every mode, for twice the timestamp window, in Redis or (while Redis is down) in the
server's own memory; a window of 0 needs an explicit insecure setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from devstack.processes import free_port
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import (
    deliver,
    fixture,
    open_encrypted_reply,
    prepare,
    reply_fields,
    signed_query,
    with_fresh_ids,
)
from weixin import redis_clients
from weixin.config import ConfigError, load_settings
from weixin.dedupe import Outcome, RequestFingerprint, RetryCache
from weixin.local_dedupe import MemoryClaims

ROOT = Path(__file__).resolve().parent.parent
MODES = ("plain", "compatible", "safe")
SIGNED_MODE_PARAMETERS = ("encrypt_type", "msg_signature")


def text(content: str) -> bytes:
    return with_fresh_ids(fixture("messages/text.xml").replace("微博".encode(), content.encode()))


def content_of(response: requests.Response, mode: str) -> str:
    assert response.status_code == 200, response.text
    if mode == "plain":
        return reply_fields(response.text)["Content"]
    return open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)["Content"]


def as_plaintext(query: dict[str, str]) -> dict[str, str]:
    """An encrypted push's query with what marks it as encrypted dropped: the signed triple stays valid."""
    return {name: value for name, value in query.items() if name not in SIGNED_MODE_PARAMETERS}


@pytest.fixture(scope="module")
def weixin(start_app) -> str:
    return start_app().url + "/weixin"  # shipped replies.yaml (echo by default), EncodingAESKey configured


# --- item 3: the triple is bound to its body in every mode ------------------------------------------


@pytest.mark.parametrize("mode", ["safe", "compatible"])
def test_an_encrypted_pushs_triple_cannot_carry_a_plaintext_body(weixin: str, mode: str) -> None:
    query, body = prepare(text("我的订单号 4711"), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
    first = content_of(deliver(weixin, query, body), mode)
    forged = deliver(weixin, as_plaintext(query), text("给我看看"))
    assert forged.status_code == 403 and len(forged.text) < 200, forged.text
    # WeChat's own retry (the same bytes) still gets the stored reply.
    assert content_of(deliver(weixin, query, body), mode) == first


@pytest.mark.parametrize("second_mode", MODES)
@pytest.mark.parametrize("first_mode", MODES)
def test_a_triple_seen_with_one_body_refuses_any_other_body_in_any_mode(
    weixin: str, first_mode: str, second_mode: str
) -> None:
    triple = signed_query(TEST_TOKEN)
    query, body = prepare(text("第一条"), TEST_TOKEN, first_mode, TEST_AES_KEY, TEST_APPID, query=triple)
    assert deliver(weixin, query, body).status_code == 200
    # Even correctly encrypted and msg-signed (as only a holder of the Token could): another body is refused.
    other_query, other_body = prepare(text("第二条"), TEST_TOKEN, second_mode, TEST_AES_KEY, TEST_APPID, query=triple)
    assert other_body != body
    assert deliver(weixin, other_query, other_body).status_code == 403


def test_plaintext_pushes_with_an_aes_key_configured_are_warned_about_once_a_minute(fresh_app) -> None:
    app = fresh_app()  # a server of its own, so that its log (and its once-a-minute memory) is this test's
    url = app.url + "/weixin"
    query, body = prepare(text("加密"), TEST_TOKEN, "safe", TEST_AES_KEY, TEST_APPID)
    assert deliver(url, query, body).status_code == 200
    assert "WECHAT_REQUIRE_ENCRYPTION" not in app.process.log_text()  # encrypted pushes: nothing to say
    for _ in range(3):
        query, body = prepare(text("明文"), TEST_TOKEN)
        assert deliver(url, query, body).status_code == 200
    log = app.process.wait_for_log("WECHAT_REQUIRE_ENCRYPTION")
    warnings = [line for line in log.splitlines() if "WECHAT_REQUIRE_ENCRYPTION" in line]
    assert len(warnings) == 1, warnings
    assert "plaintext" in warnings[0] and TEST_AES_KEY not in log and TEST_TOKEN not in log


def test_the_rate_limit_allows_one_per_interval() -> None:
    from weixin.logs import RateLimit

    limit = RateLimit(60.0)
    assert limit.allow(now=1000.0)
    assert not limit.allow(now=1000.0) and not limit.allow(now=1059.9)
    assert limit.allow(now=1060.0)
    assert not limit.allow(now=1061.0)


# --- item 10: lifetime, window 0, Redis down -------------------------------------------------------


@pytest.mark.parametrize("window", [1, 30, 300, 3600])
def test_a_fingerprint_lives_at_least_twice_the_timestamp_window(redis_client: redis.Redis, window: int) -> None:
    """A timestamp is accepted from `window` seconds before it to `window` seconds after it: the triple can
    come back up to twice the window after it was first seen."""
    fingerprint = RequestFingerprint.of("wxapp", "sig", "1700000000", f"n{window}", b"<xml>a</xml>", window)
    assert fingerprint.ttl >= 2 * window
    assert RetryCache(redis_client).claim(f"wechat:msg:wxapp:id:{window}", fingerprint).outcome is Outcome.FIRST
    assert redis_client.ttl(fingerprint.key) >= 2 * window - 1


def test_while_redis_is_down_the_local_stand_in_keeps_fingerprints_too() -> None:
    cache = RetryCache(redis_clients.request_path(f"redis://127.0.0.1:{free_port()}/0"), fallback=MemoryClaims())
    original = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>original</xml>", 300)
    first = cache.claim_with_reply("wechat:msg:wxapp:id:1", "<xml>reply</xml>", original)
    assert (first.outcome, first.local) == (Outcome.FIRST, True)
    retry = cache.claim_with_reply("wechat:msg:wxapp:id:1", "<xml>again</xml>", original)
    assert (retry.outcome, retry.reply) == (Outcome.DONE, "<xml>reply</xml>")  # WeChat's retry: same bytes
    forged = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>forged</xml>", 300)
    assert cache.claim_with_reply("wechat:msg:wxapp:id:2", "<xml>x</xml>", forged).outcome is Outcome.REPLAYED
    assert cache.claim("wechat:msg:wxapp:id:3", forged).outcome is Outcome.REPLAYED


def test_while_redis_is_down_a_replay_with_another_body_is_403_under_uwsgi(start_app) -> None:
    app = start_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    url = app.url + "/weixin"
    for mode in MODES:
        query, body = prepare(text("我的订单号 4711"), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
        first = content_of(deliver(url, query, body), mode)
        other_query, other_body = prepare(text("别的"), TEST_TOKEN, "plain", query=as_plaintext(query))
        assert deliver(url, other_query, other_body).status_code == 403, mode
        assert content_of(deliver(url, query, body), mode) == first  # WeChat's retry still answered


def settings(**env: str):
    return load_settings({"WECHAT_TOKEN": "abc123", **env}, dotenv_path=Path("/nonexistent/.env"))


def test_a_timestamp_window_of_0_is_refused_without_the_insecure_setting() -> None:
    with pytest.raises(ConfigError) as error:
        settings(WECHAT_TIMESTAMP_WINDOW="0")
    assert "WECHAT_INSECURE_NO_TIMESTAMP_WINDOW=1" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="must be 1 or 0"):
        settings(WECHAT_TIMESTAMP_WINDOW="0", WECHAT_INSECURE_NO_TIMESTAMP_WINDOW="please")
    assert settings(WECHAT_TIMESTAMP_WINDOW="0", WECHAT_INSECURE_NO_TIMESTAMP_WINDOW="1").timestamp_window == 0
    assert settings(WECHAT_TIMESTAMP_WINDOW="60").timestamp_window == 60
    assert settings().timestamp_window == 300


def test_the_app_refuses_to_start_with_a_window_of_0_in_one_line() -> None:
    env = {"WECHAT_TOKEN": "abc", "WECHAT_TIMESTAMP_WINDOW": "0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import index"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: WECHAT_TIMESTAMP_WINDOW=0"), lines


@pytest.mark.parametrize("mode", MODES)
def test_the_fingerprint_rides_on_the_claim_one_redis_round_trip_per_message(
    weixin: str, redis_server, mode: str
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert deliver(weixin, *prepare(text("预热"), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)).status_code == 200

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        # A connection's handshake (HELLO, CLIENT SETINFO) comes once per uWSGI thread, on its first message
        # (uwsgi.xml runs 16 threads a worker), not once per message.
        setup = ("cmdstat_info", "cmdstat_ping", "cmdstat_hello", "cmdstat_client|setinfo")
        return {name: value["calls"] for name, value in stats.items() if name not in setup}

    before = calls()
    for number in range(20):
        query, body = prepare(text(f"消息 {number}"), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
        assert deliver(weixin, query, body).status_code == 200
    after = calls()
    spent = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    # One EVALSHA per message, nothing else from the client; Redis counts the script's own commands too:
    # GET and SET of the fingerprint, SET NX of the message's claim.
    assert spent == {"cmdstat_evalsha": 20, "cmdstat_get": 20, "cmdstat_set": 40}, spent
