"""The hand-off's hold-mode states on a real Redis: where a custom job would send, a hold job keeps its result
(pages included) for the follower's keyword, and a passive reply carries a long text's next pages."""

from __future__ import annotations

import redis

from slow_replies.handoff import KEPT, PASSIVE, READY, SENDING, HandOff
from slow_replies.hold import KeptPages, account_mode, kept_key, switch_to_hold


def test_a_hold_job_not_taken_by_the_last_delivery_is_kept_with_its_pages(redis_client: redis.Redis) -> None:
    handoff = HandOff(redis_client)
    assert handoff.create("job-late", 0.0, "rule", "hold")
    assert handoff.take("job-late", final=True).state == "abandoned"
    assert handoff.finish("job-late", "<xml>1</xml>", "", ("<xml>2</xml>", "<xml>3</xml>")) == KEPT
    assert handoff.result_pages("job-late") == ["<xml>1</xml>", "<xml>2</xml>", "<xml>3</xml>"]


def test_a_ready_hold_job_nobody_took_is_kept_not_sent(redis_client: redis.Redis) -> None:
    handoff = HandOff(redis_client)
    handoff.create("job-ready", 0.0, "rule", "hold")
    assert handoff.finish("job-ready", "<xml>r</xml>", '{"touser":"x"}') == READY
    assert handoff.claim_send("job-ready") == KEPT
    handoff.create("job-custom", 0.0, "rule")  # custom, as before: sent
    handoff.finish("job-custom", "<xml>r</xml>", '{"touser":"x"}')
    assert handoff.claim_send("job-custom") == SENDING


def test_a_passive_reply_carries_the_next_pages(redis_client: redis.Redis) -> None:
    handoff = HandOff(redis_client)
    handoff.create("job-long", 0.0, "rule", "hold")
    handoff.finish("job-long", "<xml>page 1</xml>", "", ("<xml>page 2</xml>",))
    taken = handoff.take("job-long", final=False)
    assert (taken.state, taken.xml, taken.more) == (PASSIVE, "<xml>page 1</xml>", ("<xml>page 2</xml>",))


def test_kept_pages_come_one_per_keyword_and_a_new_result_replaces_them(redis_client: redis.Redis) -> None:
    kept = KeptPages(redis_client, "wxappid", 600)
    kept.keep("oFollower", ["a", "b"])
    assert "oFollower" not in kept_key("wxappid", "oFollower")  # the openid only as a digest
    kept.keep("oFollower", ["c", "d"])
    assert 0 < redis_client.ttl(kept_key("wxappid", "oFollower")) <= 600
    assert [kept.next_page("oFollower") for _ in range(3)] == ["c", "d", None]


def test_auto_switches_once_and_the_configured_modes_stand(redis_client: redis.Redis) -> None:
    assert account_mode("auto", redis_client, "wxappid") == "custom"
    assert switch_to_hold(redis_client, "wxappid", "custom/send") is True
    assert switch_to_hold(redis_client, "wxappid", "custom/typing") is False  # logged by the first only
    assert account_mode("auto", redis_client, "wxappid") == "hold"
    assert account_mode("custom", redis_client, "wxappid") == "custom"
    assert account_mode("hold", redis_client, "other") == "hold"


def test_a_retry_of_the_keyword_gets_the_page_its_first_delivery_took(redis_client: redis.Redis) -> None:
    # WeChat re-sends 更多 when our answer was lost on the way: the retry must not take (and lose) the next page.
    kept = KeptPages(redis_client, "wxappid", 600)
    kept.keep("oFollower", ["a", "b", "c"])
    assert kept.next_page("oFollower", "msg-1") == "a"
    assert kept.next_page("oFollower", "msg-1") == "a"
    assert [kept.next_page("oFollower", key) for key in ("msg-2", "msg-3", "msg-4")] == ["b", "c", None]
