"""Which deliveries are fresh (the clock-offset estimate), and the write-behind claims against a real Redis."""

from __future__ import annotations

import socket

import redis

from tests.waiting import wait_until
from weixin.dedupe import PENDING, Outcome, RequestFingerprint, RetryCache
from weixin.local_dedupe import MemoryClaims
from weixin.write_behind import FRESH_SECONDS, MIN_AGE_SAMPLES, DeliveryAges, clock_from_environment

WECHAT_NOW = 1_800_000_000


def ages_at(skew: float) -> tuple[DeliveryAges, list[float]]:
    """Ages on a clock `skew` s off WeChat's, warmed up with first deliveries 0.2-1.4 s in transit."""
    now = [WECHAT_NOW + skew]
    ages = DeliveryAges(lambda: now[0])
    for transit in [0.2, 0.7, 1.4, 0.5] * (MIN_AGE_SAMPLES // 4 + 1):
        now[0] += 1
        created = int(now[0] - skew - transit)
        ages.is_fresh(str(created), str(created))
    return ages, now


def test_nothing_is_fresh_before_the_offset_is_known() -> None:
    now = float(WECHAT_NOW)
    ages = DeliveryAges(lambda: now)
    assert not any(ages.is_fresh(str(WECHAT_NOW), str(WECHAT_NOW)) for _ in range(MIN_AGE_SAMPLES))
    assert ages.is_fresh(str(WECHAT_NOW), str(WECHAT_NOW))


def test_a_first_delivery_is_fresh_and_a_retry_is_not_whatever_the_clock_skew() -> None:
    for skew in (-30.0, -3.0, 0.0, 3.0, 30.0):
        ages, now = ages_at(skew)
        created = int(now[0] - skew)
        assert ages.is_fresh(str(created), str(created)), skew
        retry = created - 5  # the same message 5 s later
        assert not ages.is_fresh(str(retry), str(retry)), skew


def test_a_body_that_claims_to_be_fresh_is_not_when_the_signed_timestamp_is_old() -> None:
    ages, now = ages_at(0.0)
    assert not ages.is_fresh(str(int(now[0])), str(int(now[0] - FRESH_SECONDS - 2)))


def test_no_usable_create_time_is_never_fresh() -> None:
    ages, now = ages_at(0.0)
    for create_time in ("", "abc", str(int(now[0]) * 1000), "-1"):
        assert not ages.is_fresh(create_time, str(int(now[0])))


def test_the_test_clock_is_shifted_only_when_the_variable_is_set() -> None:
    assert abs(clock_from_environment({"WECHAT_TEST_CLOCK_OFFSET": "-3"})() - clock_from_environment({})() + 3) < 1


def test_a_fresh_claim_reaches_redis_behind_the_request(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, fallback=MemoryClaims())
    request = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>original</xml>", 300)
    first = cache.claim_fresh("k", request)
    assert (first.outcome, first.label) == (Outcome.FIRST, "first-behind")
    cache.store(first.key, "<xml>reply</xml>", behind=first.behind)
    wait_until(lambda: redis_client.get("k") == b"<xml>reply</xml>", 5)
    assert redis_client.get(request.key) == request.body_digest.encode()
    retry = cache.claim("k", request)  # a retry takes the synchronous path, on any host
    assert retry.outcome is Outcome.DONE and retry.reply == "<xml>reply</xml>"


def test_a_fresh_pending_claim_is_written_before_its_reply(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, fallback=MemoryClaims())
    assert cache.claim_fresh("k").outcome is Outcome.FIRST
    wait_until(lambda: (redis_client.get("k") or b"").startswith(PENDING), 5)
    cache.store("k", None, behind=True)
    wait_until(lambda: redis_client.get("k") == b"\x00nothing", 5)


def test_a_replay_in_the_same_seconds_on_the_same_server_is_refused_from_memory(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, fallback=MemoryClaims())
    original = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>original</xml>", 300)
    forged = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>forged</xml>", 300)
    assert cache.claim_fresh_with_reply("k1", "<xml/>", original).outcome is Outcome.FIRST
    assert cache.claim_fresh_with_reply("k2", "<xml/>", forged).outcome is Outcome.REPLAYED


def test_without_local_memory_a_fresh_claim_is_made_in_redis(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client)
    claim = cache.claim_fresh_with_reply("k", "<xml>reply</xml>")
    assert (claim.outcome, claim.behind) == (Outcome.FIRST, False)
    assert redis_client.get("k") == b"<xml>reply</xml>"


def two_workers(redis_client: redis.Redis) -> tuple[RetryCache, RetryCache, list]:
    """Two workers of one server (one shared memory); the first one's writes to Redis held back, as they are
    for the few ms before its batch goes."""
    shared = MemoryClaims()
    first = RetryCache(redis_client, fallback=shared, wait_seconds=0.3, poll_seconds=0.01)
    second = RetryCache(redis_client, fallback=shared, wait_seconds=0.3, poll_seconds=0.01)
    queued: list = []
    first.write_behind.put = queued.append
    return first, second, queued


def test_a_fresh_claim_not_yet_in_redis_is_seen_by_another_workers_synchronous_claim(
    redis_client: redis.Redis,
) -> None:
    # The soak's "handled twice": worker A claimed a delivery fresh, worker B (no clock estimate yet, or
    # judging it older) asked Redis before A's batch reached it and was told "first" too.
    first, second, queued = two_workers(redis_client)
    assert first.claim_fresh_with_reply("k", "<xml>a</xml>").outcome is Outcome.FIRST
    duplicate = second.claim_with_reply("k", "<xml>b</xml>")
    assert (duplicate.outcome, duplicate.reply) == (Outcome.DONE, "<xml>a</xml>")
    assert redis_client.get("k") is None and len(queued) == 1  # decided in memory, nothing asked of Redis


def test_a_duplicate_waits_for_the_reply_of_a_fresh_handler_running_on_another_worker(
    redis_client: redis.Redis,
) -> None:
    first, second, _ = two_workers(redis_client)
    assert first.claim_fresh("k").outcome is Outcome.FIRST
    assert second.claim("k").outcome is Outcome.IN_PROGRESS  # still running after the wait
    first.store("k", "<xml>done</xml>", behind=True)
    later = second.claim("k")
    assert (later.outcome, later.reply) == (Outcome.DONE, "<xml>done</xml>")


def test_a_synchronous_claim_is_seen_by_another_workers_fresh_claim(redis_client: redis.Redis) -> None:
    first, second, queued = two_workers(redis_client)
    assert second.claim("k").outcome is Outcome.FIRST
    assert first.claim_fresh("k").outcome is Outcome.IN_PROGRESS
    second.store("k", "<xml>done</xml>")
    assert first.claim_fresh("k").reply == "<xml>done</xml>" and queued == []


def test_a_fresh_claim_of_a_dead_worker_is_taken_over(redis_client: redis.Redis) -> None:
    first, second, _ = two_workers(redis_client)
    first.fallback.store("k", PENDING + f":{socket.gethostname()}:999999999".encode(), 5)  # no such pid
    assert second.claim("k").outcome is Outcome.FIRST
