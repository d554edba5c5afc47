"""The daemon's pure decisions: refresh timing, back-off, forced-refresh limits, errcode policy,
and the JS-SDK signature (protocol.md 5.4 vectors)."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from token_service import policy
from token_service.consumer import jsapi_signature
from token_service.upstream import UpstreamError, WeChatUpstream

STOP_ERRCODES = [45009, 40164, 61004, 89503, 89506, 89507, 40013, 40125, 40243]


def test_refresh_is_scheduled_inside_the_overlap_window_and_before_the_redis_copy_expires() -> None:
    rng = random.Random(1)
    for _ in range(1000):
        moment = policy.refresh_time(expires_at=10_000.0, overlap=300.0, expiry_margin=60.0, rng=rng)
        assert 10_000 - 300 < moment < 10_000 - 60 * 1.5 + 1e-9


def test_refresh_times_are_jittered_so_hosts_do_not_refresh_in_step() -> None:
    rng = random.Random(2)
    moments = {policy.refresh_time(10_000.0, 300.0, 60.0, rng) for _ in range(50)}
    assert max(moments) - min(moments) > 30


def test_backoff_grows_with_jitter_and_stops_at_the_cap() -> None:
    rng = random.Random(3)
    delays = [policy.backoff_delay(attempt, base=1.0, cap=60.0, rng=rng) for attempt in range(12)]
    assert 0.5 <= delays[0] <= 1.0
    assert 2.0 <= delays[2] <= 4.0
    assert all(delay <= 60.0 for delay in delays)
    assert delays[-1] >= 30.0


def test_forced_refresh_allowed_twenty_a_day_thirty_seconds_apart() -> None:
    now = 1_000_000.0
    assert policy.forced_refresh_refusal([], now, 20, 30) is None
    assert "spacing" in policy.forced_refresh_refusal([now - 10], now, 20, 30)
    assert policy.forced_refresh_refusal([now - 31], now, 20, 30) is None
    day = [now - 3600 - 60 * index for index in range(20)]
    assert "20 in 24 h" in policy.forced_refresh_refusal(day, now, 20, 30)
    yesterday = [now - 25 * 3600 - index for index in range(20)]
    assert policy.forced_refresh_refusal(yesterday, now, 20, 30) is None


@pytest.mark.parametrize("errcode", [-1, 45011, None, 40002, 12345])
def test_busy_rate_limited_unreachable_or_unknown_means_back_off(errcode: int | None) -> None:
    assert policy.error_action(errcode, 0.0).kind == policy.BACKOFF


@pytest.mark.parametrize("errcode", STOP_ERRCODES)
def test_errors_that_need_a_human_stop_with_advice_for_the_console(errcode: int) -> None:
    action = policy.error_action(errcode, 1_700_000_000.0)
    assert action.kind == policy.STOP
    assert action.pause >= 300
    assert len(action.advice) > 40


def test_whitelist_advice_names_the_console_setting() -> None:
    assert "IP白名单" in policy.error_action(40164, 0.0).advice
    assert policy.error_action(61004, 0.0).advice == policy.error_action(40164, 0.0).advice


def test_daily_quota_pause_lasts_until_beijing_midnight() -> None:
    noon_beijing = datetime.fromisoformat("2024-05-01T12:00:00+08:00").timestamp()
    assert policy.seconds_until_beijing_midnight(noon_beijing) == 12 * 3600
    assert policy.error_action(45009, noon_beijing).pause == 12 * 3600 + 60


def test_operator_override_shortens_every_stop_pause() -> None:
    assert policy.error_action(89506, 0.0, stop_pause=1.5).pause == 1.5


def test_jsapi_signature_matches_the_official_example() -> None:
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    signature = jsapi_signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value")
    assert signature == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    older = jsapi_signature(ticket, "Wm3WZYTPz0wzccnW", "1414587457", "http://mp.weixin.qq.com")
    assert older == "f4d90daf4b3bca3078ab155816175ba34c443a7b"


def test_jsapi_signature_ignores_the_url_fragment() -> None:
    ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    with_fragment = jsapi_signature(ticket, "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value#top")
    assert with_fragment == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def test_unreachable_upstream_error_never_contains_the_secret() -> None:
    from devstack.processes import free_port

    secret = "the-app-secret-0123456789"
    upstream = WeChatUpstream(f"http://127.0.0.1:{free_port()}", "wxabc", secret, timeout=1)
    for call in (upstream.classic_token, upstream.stable_token):
        with pytest.raises(UpstreamError) as caught:
            call()
        assert caught.value.errcode is None
        assert secret not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert secret not in repr(upstream)
