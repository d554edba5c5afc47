"""A token WeChat hands out with less life left than the safety margin (stable_token answers the
current token with its remaining seconds) is still stored, for part of that life, so consumers
always have a valid token; the daemon polls again soon and picks up the fresh token (issue 13,
item 14)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import pytest
import requests

from sandbox.platform import DEFAULT_SECRET
from sandbox.server import SandboxServer
from tests.token_service.conftest import ThreadDaemons, token_watcher, wait_until
from token_service import policy
from token_service.consumer import TokenUnavailable, get_access_token

STABLE = "/cgi-bin/stable_token"
# The fake WeChat rotates its stable token only in the last 3 s; the daemon keeps a 20 s margin.
# So for a while WeChat keeps answering the current token with less than the margin left.
PLATFORM_LIFETIME = 600.0
PLATFORM_OVERLAP = 3.0
DAEMON_OVERLAP = "60"
DAEMON_MARGIN = "20"
SHORT_REMAINING = 12.0


def test_policy_stores_a_credential_shorter_than_the_margin_for_half_its_life() -> None:
    # Normal life: the Redis copy ends `margin` s before WeChat's expiry.
    assert policy.storage_margin(remaining=7200, expiry_margin=60) == 60
    assert policy.storage_margin(remaining=120, expiry_margin=60) == 60
    # Less than twice the margin left: the copy lives for half of what is left, never zero.
    for remaining in (119.0, 50.0, 20.0, 1.0, 0.2):
        margin = policy.storage_margin(remaining, expiry_margin=60)
        assert margin == pytest.approx(remaining / 2)
        assert remaining - margin > 0


def test_policy_polls_again_before_the_copy_of_a_short_lived_credential_expires() -> None:
    rng = random.Random(5)
    now = 1_000_000.0
    for remaining in (100.0, 50.0, 10.0, 4.0):
        stored_for = remaining - policy.storage_margin(remaining, 60)
        for _ in range(200):
            moment = policy.refresh_time(now + remaining, 300.0, 60.0, rng, now=now, min_delay=0.5)
            # Not at once (no spinning on the same token), and before consumers would find nothing.
            assert now + 0.5 <= moment < now + stored_for


def test_policy_keeps_the_normal_schedule_for_a_long_lived_credential() -> None:
    rng = random.Random(6)
    now = 1_000_000.0
    for _ in range(200):
        moment = policy.refresh_time(now + 7200, 300.0, 60.0, rng, now=now, min_delay=0.5)
        assert now + 7200 - 300 < moment < now + 7200 - 60 * 1.5 + 1e-9


def token_key(appid: str) -> str:
    return f"wechat:access_token:{appid}"


def test_daemon_stores_a_token_with_less_life_than_the_margin_and_later_picks_up_the_fresh_one(
    make_sandbox: Callable[..., SandboxServer],
    daemons: ThreadDaemons,
) -> None:
    sandbox = make_sandbox(token_lifetime=PLATFORM_LIFETIME, overlap=PLATFORM_OVERLAP)
    platform = sandbox.platform
    appid = platform.appid
    body = {"grant_type": "client_credential", "appid": appid, "secret": DEFAULT_SECRET}
    first = requests.post(sandbox.url + STABLE, json=body, timeout=5).json()["access_token"]
    # WeChat's clock: the current token now has about 12 s left (less than the 20 s margin).
    platform.advance(PLATFORM_LIFETIME - SHORT_REMAINING)

    env = daemons.env(
        sandbox, TOKEN_OVERLAP_SECONDS=DAEMON_OVERLAP, TOKEN_EXPIRY_MARGIN_SECONDS=DAEMON_MARGIN, TOKEN_JSAPI_TICKET="0"
    )
    key = token_key(appid)
    with token_watcher(daemons.redis, key) as seen:
        daemons.start(env, name="short-lived")

        def stored_token() -> str | None:
            try:
                return get_access_token(daemons.redis, appid)
            except TokenUnavailable:
                return None

        # The short-lived token is served (before the fix nothing was stored until WeChat rotated).
        served = wait_until(stored_token, timeout=8)
        assert served == first
        assert platform.is_token_valid(served)
        ttl_ms = daemons.redis.pttl(key)
        assert 0 < ttl_ms <= SHORT_REMAINING * 1000 / 2 + 100  # the copy ends well before WeChat's expiry

        # WeChat enters its rotation window: the daemon's next poll picks up the fresh token.
        platform.advance(SHORT_REMAINING - PLATFORM_OVERLAP)
        fresh = wait_until(lambda: (value := stored_token()) and value != first and value, timeout=15)
        assert platform.is_token_valid(fresh)
        assert daemons.redis.pttl(key) > 300_000  # a normal, long-lived copy again
        wait_until(lambda: seen["values"][-1] == fresh, timeout=5)

    assert seen["values"] == [first, fresh]
    assert seen["gaps"] == 0 and seen["without_ttl"] == 0
    assert platform.calls(STABLE) < 20  # polled a few times, not in a loop
    assert not daemons.lines(logging.ERROR)
