"""The sandbox's access_token and stable_token behave like WeChat's: lifetimes, overlap, limits, errors."""

from __future__ import annotations

import pytest

from sandbox.platform import Clock, FakeWeChat

INVALID_CREDENTIAL = "invalid credential, access_token is invalid or not latest"


def test_classic_token_is_fresh_and_lives_7200_seconds(api):
    answer = api.classic()
    assert answer["expires_in"] == 7200
    assert len(answer["access_token"]) >= 100
    assert api.errcode_with(answer["access_token"]) == 0


def test_each_classic_fetch_issues_a_new_token(api):
    assert api.classic_token() != api.classic_token()


def test_previous_classic_token_works_for_the_overlap_then_answers_40001(api, wechat):
    first = api.classic_token()
    wechat.advance(100)
    second = api.classic_token()
    wechat.advance(299)
    assert api.errcode_with(first) == 0
    wechat.advance(2)
    answer = api.get("/cgi-bin/getcallbackip", access_token=first)
    assert answer["errcode"] == 40001
    assert INVALID_CREDENTIAL in answer["errmsg"]
    assert api.errcode_with(second) == 0


def test_superseded_token_close_to_expiry_dies_at_its_own_expiry_with_42001(api, wechat):
    first = api.classic_token()
    wechat.advance(7100)
    api.classic_token()
    wechat.advance(99)
    assert api.errcode_with(first) == 0
    wechat.advance(2)
    assert api.errcode_with(first) == 42001


def test_classic_token_expires_with_42001(api, wechat):
    token = api.classic_token()
    wechat.advance(7199)
    assert api.errcode_with(token) == 0
    wechat.advance(1)
    answer = api.get("/cgi-bin/getcallbackip", access_token=token)
    assert answer["errcode"] == 42001


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"appid": "wx0000000000000bad"}, 40013),
        ({"secret": "not-the-secret"}, 40125),
        ({"secret": ""}, 41004),
        ({"appid": ""}, 41002),
        ({"grant_type": "password"}, 40002),
    ],
)
def test_classic_token_rejects_bad_credentials(api, overrides, errcode):
    params = {"grant_type": "client_credential", "appid": "wxsandbox00000001", "secret": "sandbox-app-secret"}
    answer = api.get("/cgi-bin/token", **{**params, **overrides})
    assert answer["errcode"] == errcode
    assert "access_token" not in answer


def test_classic_daily_quota_answers_45009_until_the_next_day(api_for):
    clock = Clock()
    api = api_for(FakeWeChat(token_daily_quota=3, clock=clock))
    for _ in range(3):
        assert "access_token" in api.classic()
    refused = api.classic()
    assert refused["errcode"] == 45009
    assert "daily quota" in refused["errmsg"]
    clock.advance(86400)
    assert "access_token" in api.classic()


def test_stable_token_is_the_same_while_valid_with_the_remaining_time(api, wechat):
    first = api.stable()
    assert first["expires_in"] == 7200
    wechat.advance(1000)
    again = api.stable()
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] in (6199, 6200)
    assert api.stable(force_refresh=False)["access_token"] == first["access_token"]


def test_stable_token_rotates_in_its_last_overlap_and_the_old_one_lives_to_its_expiry(api, wechat):
    old = api.stable()["access_token"]
    wechat.advance(7200 - 302)
    assert api.stable()["access_token"] == old
    wechat.advance(4)  # 298 s left: inside the last 5 minutes
    rotated = api.stable()
    assert rotated["access_token"] != old
    assert rotated["expires_in"] == 7200
    assert api.errcode_with(old) == 0
    wechat.advance(297)
    assert api.errcode_with(old) == 0
    wechat.advance(2)
    assert api.errcode_with(old) == 42001
    assert api.errcode_with(rotated["access_token"]) == 0


def test_every_stable_answer_has_at_least_the_overlap_left(api, wechat):
    seen = set()
    for _ in range(100):
        answer = api.stable()
        assert answer["expires_in"] >= 300
        assert api.errcode_with(answer["access_token"]) == 0
        seen.add(answer["access_token"])
        wechat.advance(170)
    assert len(seen) >= 2


def test_force_refresh_rotates_at_once_and_kills_the_previous_token(api, wechat):
    old = api.stable()["access_token"]
    wechat.advance(60)
    forced = api.stable(force_refresh=True)
    assert forced["access_token"] != old
    assert forced["expires_in"] == 7200
    assert api.errcode_with(old) == 40001
    assert api.stable()["access_token"] == forced["access_token"]


def test_force_refresh_within_30_seconds_of_the_last_one_does_not_rotate(api, wechat):
    first = api.stable(force_refresh=True)["access_token"]
    wechat.advance(29)
    assert api.stable(force_refresh=True)["access_token"] == first
    wechat.advance(1)
    assert api.stable(force_refresh=True)["access_token"] != first


def test_force_refresh_is_limited_to_20_a_day_then_45009(api, wechat):
    tokens = set()
    for _ in range(20):
        tokens.add(api.stable(force_refresh=True)["access_token"])
        wechat.advance(30)
    assert len(tokens) == 20
    refused = api.stable(force_refresh=True)
    assert refused["errcode"] == 45009
    assert api.stable()["access_token"] in tokens  # normal mode is unaffected
    wechat.advance(86400)
    assert api.stable(force_refresh=True)["access_token"] not in tokens


def test_force_refresh_limits_follow_the_constructor(api_for):
    clock = Clock()
    api = api_for(FakeWeChat(stable_force_daily=2, stable_force_spacing=5, clock=clock))
    first = api.stable(force_refresh=True)["access_token"]
    clock.advance(5)
    second = api.stable(force_refresh=True)["access_token"]
    assert second != first
    clock.advance(5)
    assert api.stable(force_refresh=True)["errcode"] == 45009


def test_classic_and_stable_tokens_do_not_invalidate_each_other(api, wechat):
    classic = api.classic_token()
    stable = api.stable()["access_token"]
    api.classic_token()
    wechat.advance(400)
    assert api.errcode_with(stable) == 0
    fresh_classic = api.classic_token()
    api.stable(force_refresh=True)
    assert api.errcode_with(fresh_classic) == 0
    assert api.errcode_with(classic) == 40001


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"appid": "wx0000000000000bad"}, 40013),
        ({"secret": "not-the-secret"}, 40125),
        ({"secret": ""}, 41004),
        ({"grant_type": "authorization_code"}, 40002),
        ({"force_refresh": "true"}, 40097),
    ],
)
def test_stable_token_rejects_bad_requests(api, overrides, errcode):
    assert api.stable(**overrides)["errcode"] == errcode


def test_stable_token_needs_a_json_body_and_post(api):
    assert api.post("/cgi-bin/stable_token", raw=b"grant_type=client_credential")["errcode"] == 47001
    assert api.get("/cgi-bin/stable_token")["errcode"] == 43002


def test_stable_token_with_a_short_lifetime_still_rotates_before_expiry(api_for):
    clock = Clock()
    api = api_for(FakeWeChat(token_lifetime=60, overlap=10, clock=clock))
    first = api.stable()
    assert first["expires_in"] == 60
    clock.advance(51)
    second = api.stable()
    assert second["access_token"] != first["access_token"]
    assert second["expires_in"] == 60


def test_overlap_longer_than_the_lifetime_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        FakeWeChat(token_lifetime=60, overlap=300)


def test_is_token_valid_and_current_stable_token_follow_the_rules(api, wechat):
    assert wechat.current_stable_token() is None
    stable = api.stable()["access_token"]
    assert wechat.current_stable_token() == stable
    assert wechat.is_token_valid(stable)
    assert not wechat.is_token_valid("forged")
    wechat.advance(7200)
    assert not wechat.is_token_valid(stable)
    assert wechat.current_stable_token() is None


def test_platform_repr_and_state_never_show_a_secret_or_a_full_token(api, wechat):
    classic = api.classic_token()
    stable = api.stable()["access_token"]
    shown = repr(wechat) + repr(wechat.state())
    assert "sandbox-app-secret" not in shown
    assert classic not in shown and stable not in shown
    assert wechat.state()["tokens"]["stable"] == stable[:6] + "..."
