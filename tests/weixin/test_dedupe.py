"""The retry cache against a real Redis: one handling per message, the same reply for retries, no Redis no error."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import redis

from devstack.processes import free_port, running_redis
from tests.wechat_requests import fixture, parsed_message
from weixin import redis_clients
from weixin.dedupe import NOTHING, PENDING, Outcome, RequestFingerprint, RetryCache
from weixin.messages import retry_key


def parsed(name: str, **replace: str):
    text = fixture(name).decode()
    for old, new in replace.items():
        text = text.replace(old, new)
    return parsed_message(text)


def test_message_key_uses_appid_msgid_and_a_digest_of_account_and_sender() -> None:
    sender = hashlib.sha1(b"gh_10f6c3c3ac5a\x1foFollower0000000000000000001").hexdigest()
    assert retry_key("wxapp", parsed("messages/text.xml")) == f"wechat:msg:wxapp:id:6054768590064713728:{sender}"


def test_event_keys_separate_distinct_events_in_the_same_second() -> None:
    subscribe = retry_key("wxapp", parsed("events/subscribe.xml"))
    location = retry_key("wxapp", parsed("events/location.xml"))
    click_a = retry_key("wxapp", parsed("events/click.xml"))
    click_b = retry_key("wxapp", parsed("events/click.xml", V1001_TODAY="V1002_ABOUT"))
    assert len({subscribe, location, click_a, click_b}) == 4
    assert retry_key("wxapp", parsed("events/click.xml")) == click_a  # a retry is the same key


def test_event_key_contains_no_raw_event_key_text() -> None:
    key = retry_key("wxapp", parsed("events/view.xml"))
    assert "example.com" not in key and key.startswith("wechat:msg:wxapp:ev:")


def test_first_claim_handles_and_retries_get_the_stored_reply(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client)
    first = cache.claim("wechat:msg:a:id:1")
    assert first.outcome is Outcome.FIRST
    cache.store(first.key, "<xml>reply</xml>")
    for _ in range(3):
        retry = cache.claim("wechat:msg:a:id:1")
        assert retry.outcome is Outcome.DONE and retry.reply == "<xml>reply</xml>"
    ttl = redis_client.ttl("wechat:msg:a:id:1")
    assert 60 < ttl <= 300


def test_nothing_to_say_is_remembered_too(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client)
    cache.store(cache.claim("k").key, None)
    assert redis_client.get("k") == NOTHING
    retry = cache.claim("k")
    assert retry.outcome is Outcome.DONE and retry.reply is None


def test_a_retry_during_handling_waits_for_the_first_reply(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, wait_seconds=2.0)
    assert cache.claim("k").outcome is Outcome.FIRST
    threading.Timer(0.3, cache.store, args=("k", "<xml>late</xml>")).start()
    retry = cache.claim("k")
    assert retry.outcome is Outcome.DONE and retry.reply == "<xml>late</xml>"


def test_a_retry_gives_up_waiting_when_the_first_is_still_running(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, wait_seconds=0.2)
    cache.claim("k")
    started = time.monotonic()
    assert cache.claim("k").outcome is Outcome.IN_PROGRESS
    assert time.monotonic() - started < 2


def test_a_claim_whose_handler_died_expires_and_is_taken_over(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, lease_seconds=0.2, wait_seconds=1.0)
    assert cache.claim("k").outcome is Outcome.FIRST
    assert redis_client.get("k").startswith(PENDING)
    assert cache.claim("k").outcome is Outcome.FIRST  # the lease ran out while waiting


def test_concurrent_deliveries_are_handled_once(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, wait_seconds=2.0)
    outcomes: list[Outcome] = []

    def deliver() -> None:
        claim = cache.claim("k")
        outcomes.append(claim.outcome)
        if claim.outcome is Outcome.FIRST:
            time.sleep(0.2)
            cache.store(claim.key, "<xml>once</xml>")

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(Outcome.FIRST) == 1 and outcomes.count(Outcome.DONE) == 7


def test_without_redis_messages_are_answered_without_dedupe(caplog) -> None:
    unreachable = redis_clients.request_path(f"redis://127.0.0.1:{free_port()}/0")
    cache = RetryCache(unreachable)
    started = time.monotonic()
    assert cache.claim("k").outcome is Outcome.UNAVAILABLE
    cache.store("k", "<xml/>")
    assert cache.claim("k").outcome is Outcome.UNAVAILABLE  # no second connection attempt while backing off
    assert time.monotonic() - started < 2
    assert caplog.text.count("Redis unreachable") == 1


def test_a_replayed_query_string_with_another_body_is_refused(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client)
    original = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>original</xml>", 300)
    assert cache.claim("wechat:msg:wxapp:id:1", original).outcome is Outcome.FIRST
    cache.store("wechat:msg:wxapp:id:1", "<xml>reply</xml>")
    retry = cache.claim("wechat:msg:wxapp:id:1", original)
    assert retry.outcome is Outcome.DONE  # WeChat's retry: same query, same body
    forged = RequestFingerprint.of("wxapp", "sig", "1700000000", "42", b"<xml>forged</xml>", 300)
    assert cache.claim("wechat:msg:wxapp:id:2", forged).outcome is Outcome.REPLAYED
    assert 2 * 300 <= redis_client.ttl(original.key) <= 2 * 300 + 60  # twice the window (issue 13, item 10)


def test_claims_keep_working_after_redis_forgets_the_script(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client)
    assert cache.claim("k1").outcome is Outcome.FIRST
    redis_client.script_flush()  # what a restarted Redis looks like to the claim script
    assert cache.claim("k2").outcome is Outcome.FIRST
    assert redis_client.get("k2").startswith(PENDING)


def test_claims_come_back_after_redis_restarts(tmp_path: Path) -> None:
    with running_redis(tmp_path) as redis_server:  # its own: the restart must not reach another test
        cache = RetryCache(redis_clients.request_path(redis_server.url))
        assert cache.claim("before").outcome is Outcome.FIRST
        redis_server.restart()
        assert cache.claim("during-backoff").outcome in (Outcome.UNAVAILABLE, Outcome.FIRST)
        cache._down_until = 0.0  # skip the 5 s back-off instead of sleeping through it
        assert cache.claim("after").outcome is Outcome.FIRST


def test_a_retry_takes_over_at_once_when_the_handling_process_died(redis_client: redis.Redis) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    redis_client.set("k", PENDING + f":{socket.gethostname()}:{dead_pid}".encode(), px=10_000)
    cache = RetryCache(redis_client, wait_seconds=3.0)
    started = time.monotonic()
    assert cache.claim("k").outcome is Outcome.FIRST
    assert time.monotonic() - started < 1  # did not wait for the lease or the retry's patience
    assert redis_client.get("k") == PENDING + f":{socket.gethostname()}:{os.getpid()}".encode()


def test_a_retry_waits_while_the_handling_process_is_alive_or_elsewhere(redis_client: redis.Redis) -> None:
    cache = RetryCache(redis_client, wait_seconds=0.2)
    redis_client.set("alive", PENDING + f":{socket.gethostname()}:{os.getpid()}".encode(), px=10_000)
    assert cache.claim("alive").outcome is Outcome.IN_PROGRESS
    redis_client.set("elsewhere", PENDING + b":another-host:1", px=10_000)
    assert cache.claim("elsewhere").outcome is Outcome.IN_PROGRESS


def test_while_redis_is_down_claims_and_replies_live_in_the_local_stand_in() -> None:
    from weixin.local_dedupe import MemoryClaims

    cache = RetryCache(redis_clients.request_path(f"redis://127.0.0.1:{free_port()}/0"), fallback=MemoryClaims())
    first = cache.claim_with_reply("wechat:msg:a:id:1", "<xml>reply</xml>")
    assert (first.outcome, first.local, first.label) == (Outcome.FIRST, True, "first-local")
    retry = cache.claim_with_reply("wechat:msg:a:id:1", "<xml>rendered again</xml>")
    assert (retry.outcome, retry.reply) == (Outcome.DONE, "<xml>reply</xml>")
    handler = cache.claim("wechat:msg:a:id:2")
    assert handler.outcome is Outcome.FIRST and handler.local
    assert cache.claim("wechat:msg:a:id:2").outcome is Outcome.IN_PROGRESS
    cache.store(handler.key, None, local=True)
    nothing = cache.claim("wechat:msg:a:id:2")
    assert (nothing.outcome, nothing.reply) == (Outcome.DONE, None)


def test_the_memory_stand_in_is_bounded_and_expires() -> None:
    from weixin.local_dedupe import MemoryClaims

    claims = MemoryClaims(max_items=3)
    for number in range(5):
        assert claims.claim(f"k{number}", b"v", 60) is None
    assert claims.claim("k0", b"again", 60) is None  # evicted, so claimable again
    assert claims.claim("k4", b"again", 60) == b"v"
    assert claims.claim("short", b"v", 0) is None
    assert claims.claim("short", b"again", 60) is None  # expired at once


def test_a_forked_child_claims_on_its_own_connection_and_leaves_the_parents_alone(redis_server) -> None:
    """uWSGI forks its workers after index.py built the App: a connection the parent opened (ScriptRunner keeps
    one per thread, outside redis-py's pool and its pid check) must not be written on by a child."""
    cache = RetryCache(redis_clients.request_path(redis_server.url))
    assert cache.claim_with_reply("wechat:msg:fork:parent", "<xml/>").outcome is Outcome.FIRST
    parent_connection = cache._claim_script._connection()
    child = os.fork()
    if child == 0:  # the child: exit 0 when its claim went out on a socket of its own
        try:
            claimed = cache.claim_with_reply("wechat:msg:fork:child", "<xml/>").outcome is Outcome.FIRST
            own = cache._claim_script._connection() is not parent_connection
            os._exit(0 if claimed and own else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection still works: the child did not read its replies or close it.
    assert cache.claim_with_reply("wechat:msg:fork:parent", "<xml/>").outcome is Outcome.DONE
    assert cache._claim_script._connection() is parent_connection
