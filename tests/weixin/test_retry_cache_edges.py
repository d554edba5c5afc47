"""Edges of the retry cache (weixin/dedupe.py) that the mutation run (`make mutate`, docs/testing.md) found
unpinned: the exact key of each kind of message, the replay fingerprint's lifetime, the stored reply's
TTL, and the local stand-in's claims while Redis is down. Real Redis where Redis is involved."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys

import redis

from devstack.processes import free_port
from tests.wechat_requests import parsed_message
from weixin import redis_clients
from weixin.dedupe import (
    DEFAULT_TIMESTAMP_WINDOW,
    FINGERPRINT_SLACK_SECONDS,
    PENDING,
    REPLY_TTL_SECONDS,
    Outcome,
    RequestFingerprint,
    RetryCache,
    fingerprint_ttl,
    handler_is_dead,
    pending_marker,
)
from weixin.local_dedupe import MemoryClaims
from weixin.messages import retry_key

TO = "gh_10f6c3c3ac5a"
FROM = "oFollower0000000000000000001"


def event(**fields: str) -> object:
    values = {"ToUserName": TO, "FromUserName": FROM, "CreateTime": "1409735668", "MsgType": "event",
              "Event": "CLICK", "EventKey": "V1001_TODAY", **fields}
    body = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in values.items() if value is not None)
    return parsed_message(f"<xml>{body}</xml>")


def digest(*values: str) -> str:
    return hashlib.sha1("\x1f".join(values).encode()).hexdigest()


def test_an_event_key_is_a_digest_of_every_identifying_field_in_a_fixed_order() -> None:
    fields = [TO, FROM, "1409735668", "event", "CLICK", "V1001_TODAY", "", ""]
    assert retry_key("wxapp", event()) == f"wechat:msg:wxapp:ev:{digest(*fields)}"


def test_events_differing_in_one_identifying_field_get_different_keys() -> None:
    base = retry_key("wxapp", event())
    for changed in ({"CreateTime": "1409735669"}, {"MsgType": "other"}, {"MsgID": "1001"}, {"MsgId": "x1"}):
        assert retry_key("wxapp", event(**changed)) != base, changed


def test_a_message_whose_msgid_is_not_digits_is_keyed_like_an_event_with_empty_missing_fields() -> None:
    message = parsed_message(
        f"<xml><ToUserName>{TO}</ToUserName><FromUserName>oF</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>text</MsgType><Content>hi</Content><MsgId>abc</MsgId></xml>"
    )  # the endpoint refuses a push without FromUserName; Event, EventKey and MsgID are the missing ones
    fields = [TO, "oF", "1", "text", "", "", "", "abc"]
    assert retry_key("wxapp", message) == f"wechat:msg:wxapp:ev:{digest(*fields)}"


def test_without_an_appid_the_account_is_the_original_id_or_a_short_digest_of_it() -> None:
    assert retry_key("", event()).startswith(f"wechat:msg:{TO}:ev:")
    odd = "gh 10f6/../"
    assert retry_key("", event(ToUserName=odd)).startswith(f"wechat:msg:to-{digest(odd)[:16]}:ev:")


def test_a_replay_fingerprint_lives_twice_the_window_or_twice_the_default_without_one() -> None:
    assert fingerprint_ttl(1) == 2 + FINGERPRINT_SLACK_SECONDS
    assert fingerprint_ttl(300) == 600 + FINGERPRINT_SLACK_SECONDS
    assert fingerprint_ttl(0) == 2 * DEFAULT_TIMESTAMP_WINDOW + FINGERPRINT_SLACK_SECONDS


def test_distinct_signed_requests_with_distinct_bodies_are_not_replays(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client)
    one = RequestFingerprint.of("wxapp", "sig1", "1700000000", "1", b"<xml>one</xml>", 300)
    two = RequestFingerprint.of("wxapp", "sig2", "1700000000", "2", b"<xml>two</xml>", 300)
    assert one.key != two.key
    assert cache.claim("wechat:msg:wxapp:id:1", one).outcome is Outcome.FIRST
    assert cache.claim("wechat:msg:wxapp:id:2", two).outcome is Outcome.FIRST


def test_a_reply_stored_by_the_claim_lives_reply_ttl_seconds_under_the_message_key(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client)
    first = cache.claim_with_reply("wechat:msg:wxapp:id:7", "<xml>reply</xml>")
    assert (first.outcome, first.key) == (Outcome.FIRST, "wechat:msg:wxapp:id:7")
    assert redis_client.get("wechat:msg:wxapp:id:7") == b"<xml>reply</xml>"
    assert REPLY_TTL_SECONDS * 1000 - 5000 <= redis_client.pttl("wechat:msg:wxapp:id:7") <= REPLY_TTL_SECONDS * 1000


class RecordingClaims(MemoryClaims):
    """The memory stand-in, recording the lifetime a claim was last given (what uWSGI's cache would be given):
    a claim is taken here first for a few seconds, and made to last the lease when Redis turns out down."""

    def __init__(self) -> None:
        super().__init__()
        self.ttls: list[object] = []

    def claim(self, key: str, value: bytes, ttl_seconds: int) -> bytes | None:
        self.ttls.append(ttl_seconds)
        return super().claim(key, value, ttl_seconds)

    def store(self, key: str, value: bytes, ttl_seconds: int) -> None:
        self.ttls.append(ttl_seconds)
        super().store(key, value, ttl_seconds)


class FullClaims:
    """A stand-in that is full: uWSGI's cache answers an empty value when it could not store a claim."""

    def claim(self, key: str, value: bytes, ttl_seconds: int) -> bytes | None:
        return b""

    def store(self, key: str, value: bytes, ttl_seconds: int) -> None:
        pass


def unreachable_redis() -> redis.Redis:
    return redis_clients.request_path(f"redis://127.0.0.1:{free_port()}/0")


def test_local_claims_while_redis_is_down_name_their_key_and_say_they_are_local() -> None:
    cache = RetryCache(unreachable_redis(), fallback=MemoryClaims())
    original = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>original</xml>", 300)
    forged = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>forged</xml>", 300)
    other = RequestFingerprint.of("wxapp", "sig2", "1700000000", "43", b"<xml>other</xml>", 300)

    first = cache.claim("k1", original)  # the claim that finds Redis down records the fingerprint too
    replayed = cache.claim("k2", forged)
    waiting = cache.claim("k1", original)
    distinct = cache.claim("k3", other)
    cache.store("k1", "<xml>reply</xml>", local=True)
    done = cache.claim("k1", original)

    assert (first.outcome, first.key, first.local) == (Outcome.FIRST, "k1", True)
    assert (waiting.outcome, waiting.key, waiting.local) == (Outcome.IN_PROGRESS, "k1", True)
    assert (replayed.outcome, replayed.key, replayed.local) == (Outcome.REPLAYED, "k2", True)
    assert (distinct.outcome, distinct.key) == (Outcome.FIRST, "k3")
    assert (done.outcome, done.key, done.reply, done.local) == (Outcome.DONE, "k1", "<xml>reply</xml>", True)


def test_a_full_or_missing_stand_in_makes_the_claim_unavailable_for_its_key() -> None:
    for fallback in (FullClaims(), None):
        claim = RetryCache(unreachable_redis(), fallback=fallback).claim("k")
        assert (claim.outcome, claim.key, claim.local) == (Outcome.UNAVAILABLE, "k", False)


def test_local_claims_last_the_lease_in_whole_seconds_and_at_least_one() -> None:
    for lease, expected in ((10.0, 10), (0.5, 1)):
        claims = RecordingClaims()
        RetryCache(unreachable_redis(), lease_seconds=lease, fallback=claims).claim("k")
        assert claims.ttls[-1] == expected and all(isinstance(ttl, int) for ttl in claims.ttls)


def test_the_redis_outage_is_logged_once_with_where_dedupe_went(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dedupe"):
        RetryCache(unreachable_redis(), fallback=MemoryClaims()).claim("k")
        RetryCache(unreachable_redis()).claim("k")
    lines = [record.getMessage() for record in caplog.records if record.name == "dedupe"]
    assert lines == [
        "Redis unreachable (ConnectionError); dedupe in this server's memory for the next 5.0s",
        "Redis unreachable (ConnectionError); dedupe off for the next 5.0s",
    ]


def test_the_request_path_redis_client_fails_fast_and_never_retries() -> None:
    client = redis_clients.request_path("redis://127.0.0.1:6379/0")
    options = client.connection_pool.connection_kwargs
    assert (options["socket_connect_timeout"], options["socket_timeout"]) == (0.25, 0.5)
    assert options["health_check_interval"] == 30
    assert options["retry"].get_retries() == 0


def test_a_retry_takes_over_with_a_full_lease_when_the_first_claim_expires_while_it_waits(
    redis_client: redis.Redis,
) -> None:
    redis_client.set("k", pending_marker(), px=300)  # a live handler whose lease runs out
    claim = RetryCache(redis_client, lease_seconds=10, wait_seconds=5).claim("k")
    assert (claim.outcome, claim.key) == (Outcome.FIRST, "k")
    assert redis_client.get("k") == pending_marker()
    assert 5_000 < redis_client.pttl("k") <= 10_000


def test_claims_made_through_redis_name_their_key_whatever_the_outcome(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, wait_seconds=0.2)
    redis_client.set("busy", pending_marker(), px=10_000)
    busy = cache.claim("busy")
    redis_client.set("busy", b"<xml>reply</xml>", px=10_000)
    done = cache.claim("busy")
    original = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>original</xml>", 300)
    forged = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>forged</xml>", 300)
    cache.claim("first", original)
    replayed = cache.claim("second", forged)
    assert (busy.outcome, busy.key) == (Outcome.IN_PROGRESS, "busy")
    assert (done.outcome, done.key, done.reply) == (Outcome.DONE, "busy", "<xml>reply</xml>")
    assert (replayed.outcome, replayed.key) == (Outcome.REPLAYED, "second")


def test_a_reply_claimed_locally_is_stored_locally_even_once_redis_answers_again(redis_client: redis.Redis) -> None:
    local = MemoryClaims()
    cache = RetryCache(redis_client, fallback=local)
    cache.store("k", "<xml>reply</xml>", local=True)
    assert redis_client.get("k") is None
    assert local.claim("k", b"other", 60) == b"<xml>reply</xml>"


def test_only_a_pending_marker_of_a_gone_process_on_this_host_means_the_handler_died() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    assert handler_is_dead(PENDING + f":{host}:{int(gone.stdout)}".encode())
    assert not handler_is_dead(PENDING + f":{host}:{os.getpid()}".encode())
    assert not handler_is_dead(PENDING + f":another-host:{int(gone.stdout)}".encode())
    assert not handler_is_dead(PENDING + b":garbage")
