"""Edges of the token policy and of what the store records, found unpinned by the mutation run
(`make mutate`, docs/testing.md): exact refresh times at the bounds of the jitter, the forced-refresh
limits at their boundaries, the pause until Beijing midnight, the advice each errcode gets, the status
fields `python -m token_service status` reads, and the TTLs of the lock and the forced-refresh log."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis

from token_service import policy
from token_service.store import ACCESS_TOKEN, FORCED_WINDOW_SECONDS, Credential, TokenStore, fingerprint

BEIJING = timezone(timedelta(hours=8))
APPID = "wxpolicyedges0001"


class Bound(random.Random):
    """An rng whose jitter is always the low (or high) end of the range asked for."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


LOW, HIGH = Bound(high=False), Bound(high=True)


def test_the_refresh_is_planned_inside_the_overlap_and_never_closer_than_one_and_a_half_margins() -> None:
    assert policy.refresh_time(1000.0, 100.0, 10.0, LOW) == 940.0  # 0.6 of the overlap before expiry
    assert policy.refresh_time(1000.0, 100.0, 10.0, HIGH) == 910.0  # 0.9 of it
    assert policy.refresh_time(1000.0, 10.0, 10.0, HIGH) == 985.0  # 1.5 margins beat 0.9 of a short overlap


def test_a_credential_already_inside_its_window_is_polled_again_within_its_stored_life() -> None:
    # 10 s left, 5 s of them stored (storage_margin), polled after a quarter to a half of those 5 s.
    assert policy.refresh_time(1000.0, 100.0, 10.0, LOW, now=990.0) == 991.25
    assert policy.refresh_time(1000.0, 100.0, 10.0, HIGH, now=990.0) == 992.5
    assert policy.refresh_time(1000.0, 100.0, 10.0, LOW, now=990.0, min_delay=2.0) == 992.0
    # 2 s left, 1 s stored: without a min_delay the next poll is a quarter second away.
    assert policy.refresh_time(1000.0, 100.0, 10.0, LOW, now=998.0) == 998.25


def test_a_planned_time_equal_to_now_counts_as_inside_the_window() -> None:
    # planned = 1000 - 15 = 985 = now: poll again soon rather than "refresh at 985", which is now.
    assert policy.refresh_time(1000.0, 10.0, 10.0, HIGH, now=985.0) == 985.0 + (15 - 7.5) * 0.5


def test_the_backoff_exponent_stops_growing_at_thirty() -> None:
    assert policy.backoff_delay(40, 1.0, float("inf"), HIGH) == 2.0**30
    assert policy.backoff_delay(3, 1.0, float("inf"), LOW) == 4.0


def test_the_pause_until_beijing_midnight_counts_to_the_exact_second() -> None:
    moment = datetime(2026, 3, 1, 12, 34, 56, 789000, tzinfo=BEIJING).timestamp()
    assert policy.seconds_until_beijing_midnight(moment) == pytest.approx(11 * 3600 + 25 * 60 + 3.211, abs=1e-6)


def test_a_given_stop_pause_overrides_the_wait_for_midnight_on_45009() -> None:
    assert policy.error_action(45009, time.time(), stop_pause=5.0).pause == 5.0


@pytest.mark.parametrize(
    ("errcode", "advice"),
    [
        (45011, "WeChat says the token API is called too often; backing off"),
        (None, "WeChat is unreachable or answered garbage; retrying with back-off"),
        (-1, "WeChat is busy or answered an unexpected errcode; retrying with back-off"),
        (45012, "WeChat is busy or answered an unexpected errcode; retrying with back-off"),
    ],
)
def test_errors_that_back_off_pause_by_the_backoff_alone_and_say_why(errcode: int | None, advice: str) -> None:
    assert policy.error_action(errcode, 0.0) == policy.ErrorAction(policy.BACKOFF, 0, advice)


def test_forced_refreshes_count_for_exactly_24_hours() -> None:
    now = 1_000_000.0
    day = 24 * 3600
    assert policy.forced_refresh_refusal([now - day], now, 1, 0) is None
    assert policy.forced_refresh_refusal([now - day + 1], now, 1, 0) == "forced refresh limit reached (1 in 24 h)"
    assert policy.forced_refresh_refusal([now - day - 1800], now, 1, 0) is None


def test_forced_refreshes_exactly_the_spacing_apart_are_allowed() -> None:
    assert policy.forced_refresh_refusal([970.0], 1000.0, 20, 30) is None
    assert policy.forced_refresh_refusal([990.0], 1000.0, 20, 30) == (
        "last forced refresh was 10.0s ago (minimum spacing 30s)"
    )


def test_an_error_is_recorded_in_the_fields_status_reads(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    store.record_error(ACCESS_TOKEN, 40164, "errcode 40164: invalid ip", now=1234.5)
    store.record_error("jsapi_ticket", None, "timeout")
    assert store.meta(ACCESS_TOKEN) == {
        "last_error": "errcode 40164: invalid ip", "last_errcode": "40164", "last_error_at": "1234.500"
    }
    ticket = store.meta("jsapi_ticket")
    assert ticket["last_errcode"] == "" and abs(float(ticket["last_error_at"]) - time.time()) < 60


def test_the_forced_refresh_log_outlives_its_window_by_a_minute(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    store.record_forced()
    assert FORCED_WINDOW_SECONDS + 55 <= redis_client.ttl(store.forced_key) <= FORCED_WINDOW_SECONDS + 60


def test_a_renewed_lease_lasts_the_lease_asked_for(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    assert store.acquire_lock("me", 5)
    assert store.renew_lock("me", 1000)
    assert 990_000 <= redis_client.pttl(store.lock_key) <= 1_000_000
    store.release_lock("me")


def test_an_unvouched_value_lives_exactly_its_redis_ttl(redis_client: redis.Redis) -> None:
    redis_client.set(f"wechat:access_token:{APPID}", "PLANTED", px=10_000_000)
    before = time.time()
    found = TokenStore(redis_client, APPID).read()
    assert found is not None and not found.vouched and found.fetched_at >= before
    assert 9_990 < found.remaining() <= 10_000


def test_a_vouched_credential_without_a_source_reads_back_with_an_empty_one(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID, secret="s")
    assert store.acquire_lock("me", 5)
    now = time.time()
    assert store.write(ACCESS_TOKEN, "me", Credential("T", now, now + 100, "stable"), 10)
    redis_client.hdel(store.meta_key(), "source")
    found = store.read()
    assert found is not None and found.vouched and found.source == ""


def test_the_metadata_mac_keeps_its_format_so_an_upgraded_daemon_adopts_the_stored_token(
    redis_client: redis.Redis,
) -> None:
    store = TokenStore(redis_client, APPID, secret="s")
    assert store.acquire_lock("me", 5)
    assert store.write(ACCESS_TOKEN, "me", Credential("T", 1.0, time.time() + 100, "stable"), 10)
    meta = store.meta()
    key = hmac.new(b"s", b"token_service: metadata of a stored credential, v1", hashlib.sha256).digest()
    text = "\n".join((APPID, ACCESS_TOKEN, "T", meta["fetched_at"], meta["expires_at"]))
    assert meta["mac"] == hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    redis_client.hdel(store.meta_key(), "mac")
    found = store.read()
    assert found is not None and not found.vouched  # no MAC, no adoption


def test_the_lock_lease_is_the_lease_asked_for(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    assert store.acquire_lock("me", 1000)
    assert 990_000 <= redis_client.pttl(store.lock_key) <= 1_000_000
    store.release_lock("me")


def test_each_credential_has_its_own_update_channel(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    assert store.channel("jsapi_ticket") == f"wechat:jsapi_ticket:{APPID}:updated"
    assert store.channel() == f"wechat:access_token:{APPID}:updated"


def test_a_fingerprint_is_twelve_hex_digits_of_sha256() -> None:
    assert fingerprint("TOKEN-A") == hashlib.sha256(b"TOKEN-A").hexdigest()[:12]


def test_a_write_computes_the_ttl_from_the_moment_given(redis_client: redis.Redis) -> None:
    store = TokenStore(redis_client, APPID)
    assert store.acquire_lock("me", 5)
    now = time.time()
    # The TTL runs from the moment given (100 s ago): 200 s of life less the 10 s margin, not 90 s from now.
    assert store.write(ACCESS_TOKEN, "me", Credential("T", now - 100, now + 100, "stable"), 10, now=now - 100)
    assert 185_000 <= redis_client.pttl(store.key()) <= 190_000
    store.release_lock("me")
