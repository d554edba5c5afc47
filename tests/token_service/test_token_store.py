"""The Redis layout against a real Redis: atomic fenced writes with TTL, the lease, requests."""

from __future__ import annotations

import time

import redis

from token_service.store import ACCESS_TOKEN, JSAPI_TICKET, Credential, TokenStore, fingerprint

APPID = "wxstoretest000001"


def credential(value: str = "TOKEN-A", remaining: float = 100.0) -> Credential:
    now = time.time()
    return Credential(value, now, now + remaining, "stable")


def test_token_is_a_plain_string_whose_ttl_ends_before_wechat_expiry(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    assert store.acquire_lock("me", 5)
    assert store.write(ACCESS_TOKEN, "me", credential(remaining=100), expiry_margin=10)
    assert redis_client.get(f"wechat:access_token:{APPID}") == b"TOKEN-A"
    ttl = redis_client.pttl(f"wechat:access_token:{APPID}")
    assert 88_000 < ttl <= 90_000
    meta = store.meta(ACCESS_TOKEN)
    assert meta["source"] == "stable" and meta["leader"] == "me"
    assert meta["fingerprint"] == fingerprint("TOKEN-A")
    assert float(meta["expires_at"]) - time.time() > 99


def test_a_token_too_close_to_expiry_is_never_stored_without_ttl(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    store.acquire_lock("me", 5)
    assert not store.write(ACCESS_TOKEN, "me", credential(remaining=5), expiry_margin=10)
    assert redis_client.exists(f"wechat:access_token:{APPID}") == 0


def test_only_the_lock_owner_can_write(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    assert store.acquire_lock("leader", 5)
    assert not store.write(ACCESS_TOKEN, "former-leader", credential("STALE"), 1)
    assert store.read_value(ACCESS_TOKEN) is None
    assert store.write(ACCESS_TOKEN, "leader", credential("FRESH"), 1)
    assert store.read_value(ACCESS_TOKEN) == "FRESH"


def test_lock_is_exclusive_renewed_by_owner_and_released_by_compare_and_delete(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    assert store.acquire_lock("a", 1)
    assert not store.acquire_lock("b", 1)
    assert not store.renew_lock("b", 10)
    assert store.renew_lock("a", 10)
    assert redis_client.pttl(store.lock_key) > 5000
    assert not store.release_lock("b")
    assert store.lock_holder() == "a"
    assert store.release_lock("a")
    assert store.acquire_lock("b", 1)


def test_a_successful_write_clears_the_last_error(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    store.record_error(ACCESS_TOKEN, 40164, "whitelist")
    assert store.meta(ACCESS_TOKEN)["last_errcode"] == "40164"
    store.acquire_lock("me", 5)
    store.write(ACCESS_TOKEN, "me", credential(), 1)
    assert "last_error" not in store.meta(ACCESS_TOKEN)


def test_many_reports_are_taken_as_one_batch_and_carry_no_token(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    for _ in range(20):
        store.push_refresh_request("BAD-TOKEN")
    assert b"BAD-TOKEN" not in b"".join(redis_client.lrange(store.requests_key, 0, -1))
    assert redis_client.ttl(store.requests_key) > 0
    batch = store.wait_refresh_requests(1.0)
    assert batch == [fingerprint("BAD-TOKEN")] * 20
    assert store.wait_refresh_requests(0.05) == []


def test_a_write_publishes_the_new_fingerprint(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.channel(JSAPI_TICKET))
    store.acquire_lock("me", 5)
    store.write(JSAPI_TICKET, "me", credential("TICKET"), 1)
    message = None
    deadline = time.monotonic() + 2
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
    assert message["data"] == fingerprint("TICKET").encode()
    assert redis_client.get(f"wechat:jsapi_ticket:{APPID}") == b"TICKET"
    pubsub.close()


def test_key_names_carry_the_appid_and_never_the_secret(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    store.acquire_lock("me", 5)
    store.write(ACCESS_TOKEN, "me", credential(), 1)
    store.push_refresh_request("x")
    store.record_forced()
    keys = sorted(key.decode() for key in redis_client.keys("*"))
    assert keys == [
        f"wechat:access_token:{APPID}",
        f"wechat:access_token:{APPID}:forced",
        f"wechat:access_token:{APPID}:meta",
        f"wechat:access_token:{APPID}:requests",
        f"wechat:lock:token:{APPID}",
    ]
