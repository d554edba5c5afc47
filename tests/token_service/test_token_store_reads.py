"""Reading a credential back from Redis: what the daemon vouches for (fingerprint and, with the AppSecret,
a MAC over appid, kind, value and times) comes back as written; anything else comes back unvouched with
only its Redis TTL as its life. Also the forced-refresh log, discard, masking and the storage margin.
Before the mutation run (`make mutate`, docs/testing.md) these were reached only through the daemon's
process tests, so no mutant of them was ever run. Real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from token_service.policy import storage_margin
from token_service.store import (
    ACCESS_TOKEN,
    FORCED_WINDOW_SECONDS,
    JSAPI_TICKET,
    Credential,
    TokenStore,
    fingerprint,
    masked,
)

APPID = "wxstorereads00001"
SECRET = "the-appsecret"


def written(client: redis.Redis, secret: str | None = SECRET, kind: str = ACCESS_TOKEN, value: str = "TOKEN-A",
            appid: str = APPID) -> Credential:
    store = TokenStore(client, appid, secret=secret)
    assert store.acquire_lock("me", 5)
    now = time.time()
    credential = Credential(value, round(now, 3), round(now + 100, 3), "stable")
    assert store.write(kind, "me", credential, expiry_margin=10)
    store.release_lock("me")
    return credential


@pytest.mark.parametrize("kind", [ACCESS_TOKEN, JSAPI_TICKET])
def test_a_credential_written_with_the_secret_reads_back_vouched_with_its_times(
    redis_client: redis.Redis, kind: str
) -> None:
    credential = written(redis_client, kind=kind)
    assert TokenStore(redis_client, APPID, secret=SECRET).read(kind) == credential


def test_without_a_secret_the_fingerprint_alone_vouches(redis_client: redis.Redis) -> None:
    credential = written(redis_client, secret=None)
    assert TokenStore(redis_client, APPID).read() == credential


def unvouched(client: redis.Redis, secret: str | None = SECRET, kind: str = ACCESS_TOKEN,
              appid: str = APPID) -> None:
    found = TokenStore(client, appid, secret=secret).read(kind)
    assert found is not None and found.value == "TOKEN-A"
    assert (found.vouched, found.source) == (False, "unknown")
    # Its life is the Redis TTL (90 s: WeChat's 100 s less the 10 s margin), not the metadata's times.
    assert 85 < found.remaining() <= 90.5


def test_another_secret_does_not_vouch(redis_client: redis.Redis) -> None:
    written(redis_client)
    unvouched(redis_client, secret="another-secret")


def test_a_credential_signed_for_another_kind_or_account_does_not_vouch(redis_client: redis.Redis) -> None:
    written(redis_client, kind=JSAPI_TICKET)
    for field in ("fetched_at", "expires_at", "fingerprint", "mac"):  # the ticket's metadata as the token's
        redis_client.hset(f"wechat:access_token:{APPID}:meta", field,
                          redis_client.hget(f"wechat:jsapi_ticket:{APPID}:meta", field))
    redis_client.set(f"wechat:access_token:{APPID}", "TOKEN-A", px=90_000)
    unvouched(redis_client)
    written(redis_client, appid="wxotheraccount001")
    for suffix in ("", ":meta"):
        redis_client.copy(f"wechat:access_token:wxotheraccount001{suffix}", f"wechat:access_token:{APPID}{suffix}",
                          replace=True)
    unvouched(redis_client)


@pytest.mark.parametrize(
    "tamper",
    [
        {"mac": "0" * 64},
        {"fingerprint": fingerprint("TOKEN-B")},
        {"expires_at": "9999999999.000"},
        {"fetched_at": "1.000"},
    ],
)
def test_metadata_changed_after_the_write_does_not_vouch(redis_client: redis.Redis, tamper: dict) -> None:
    written(redis_client)
    redis_client.hset(f"wechat:access_token:{APPID}:meta", mapping=tamper)
    unvouched(redis_client)


@pytest.mark.parametrize("field", ["fetched_at", "expires_at", "fingerprint", "mac"])
def test_metadata_missing_a_field_does_not_vouch(redis_client: redis.Redis, field: str) -> None:
    written(redis_client)
    redis_client.hdel(f"wechat:access_token:{APPID}:meta", field)
    unvouched(redis_client)


def test_unreadable_times_do_not_vouch_even_without_a_secret(redis_client: redis.Redis) -> None:
    written(redis_client, secret=None)
    redis_client.hset(f"wechat:access_token:{APPID}:meta", "expires_at", "soon")
    unvouched(redis_client, secret=None)


def test_a_value_set_by_hand_reads_back_unvouched_and_nothing_reads_as_none(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID, secret=SECRET)
    assert store.read() is None
    redis_client.set(f"wechat:access_token:{APPID}", "TOKEN-A", px=90_000)
    unvouched(redis_client)
    redis_client.set(f"wechat:access_token:{APPID}", "TOKEN-A")  # no TTL at all: no life
    found = store.read()
    assert found is not None and not found.vouched and found.remaining() <= 0


def test_discard_removes_only_that_value_and_only_for_the_lock_holder(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    redis_client.set(f"wechat:access_token:{APPID}", "PLANTED")
    assert store.acquire_lock("me", 5)
    assert not store.discard(ACCESS_TOKEN, "someone-else", "PLANTED")
    assert not store.discard(ACCESS_TOKEN, "me", "ANOTHER")
    assert redis_client.get(f"wechat:access_token:{APPID}") == b"PLANTED"
    assert store.discard(ACCESS_TOKEN, "me", "PLANTED")
    assert redis_client.exists(f"wechat:access_token:{APPID}") == 0


def test_the_forced_refresh_log_keeps_the_last_day_in_order(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    now = round(time.time()) - 10 * 24 * 3600  # ten days ago
    for moment in (now - FORCED_WINDOW_SECONDS - 1, now - 60, now - 3600, now):
        store.record_forced(moment)
    assert store.forced_times(now) == [now - 3600, now - 60, now]
    assert redis_client.zcard(store.forced_key) == 3  # the old entry is gone from Redis too
    assert store.forced_times() == []  # measured from the real clock, these are all older than a day


def test_masked_names_a_token_by_its_fingerprint_only() -> None:
    assert masked("TOKEN-A") == "#" + fingerprint("TOKEN-A")
    assert masked(None) == masked("") == "<none>"


def test_remaining_life_is_measured_from_now_or_a_given_moment() -> None:
    credential = Credential("T", 0.0, time.time() + 50, "stable")
    assert 49 < credential.remaining() <= 50
    assert credential.remaining(now=credential.expires_at - 7) == 7


@pytest.mark.parametrize(
    ("remaining", "margin", "expected"),
    [(7200.0, 60.0, 60.0), (120.0, 60.0, 60.0), (100.0, 60.0, 50.0), (1.0, 60.0, 0.5), (-5.0, 60.0, 0.0)],
)
def test_the_storage_margin_is_the_expiry_margin_or_half_a_short_life(
    remaining: float, margin: float, expected: float
) -> None:
    assert storage_margin(remaining, margin) == expected
