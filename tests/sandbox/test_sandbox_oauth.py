"""Web authorization (OAuth2) in the sandbox: the authorize page, single-use codes, tokens, userinfo."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest

from sandbox.platform import DEFAULT_APPID, DEFAULT_FOLLOWER_AVATAR, DEFAULT_FOLLOWER_OPENID, DEFAULT_SECRET

REDIRECT = "https://app.example.com/oauth/callback?next=%2Fhome"
OTHER_USER = "oOAuthOnlyUser00000000000001"


def authorize(api, **overrides):
    params = {"appid": DEFAULT_APPID, "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "snsapi_userinfo", "state": "xyz123", **overrides}
    return api.session.get(api.base_url + "/connect/oauth2/authorize", params=params, timeout=10)


def click(api, page, button_id):
    href = re.search(rf'id="{button_id}" href="([^"]+)"', page.text).group(1)
    response = api.session.get(urljoin(api.base_url, html.unescape(href)), allow_redirects=False, timeout=10)
    assert response.status_code == 302
    location = response.headers["Location"]
    return location, parse_qs(urlsplit(location).query)


def exchange(api, code, secret=DEFAULT_SECRET):
    return api.get("/sns/oauth2/access_token", appid=DEFAULT_APPID, secret=secret, code=code,
                   grant_type="authorization_code")


def test_authorize_page_shows_the_test_follower_and_approve_and_deny(api):
    page = authorize(api)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "沙盒测试用户" in page.text
    assert 'name="viewport"' in page.text
    assert ">同意</a>" in page.text and ">拒绝</a>" in page.text
    # The avatar is the sandbox's own (at thirdwx.qlogo.cn's path), so that the page shows it offline.
    avatar = html.unescape(re.search(r'<img class="avatar" src="([^"]+)"', page.text).group(1))
    assert avatar == urlsplit(DEFAULT_FOLLOWER_AVATAR).path
    image = api.session.get(urljoin(api.base_url, avatar), timeout=10)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/svg+xml"
    assert image.text.startswith("<svg")


def test_approve_redirects_with_code_and_state_keeping_the_callbacks_own_query(api):
    location, query = click(api, authorize(api), "approve")
    assert location.startswith("https://app.example.com/oauth/callback?next=%2Fhome&code=")
    assert query["state"] == ["xyz123"]
    assert query["next"] == ["/home"]
    assert len(query["code"][0]) >= 16


def test_deny_redirects_with_state_only(api):
    location, query = click(api, authorize(api), "deny")
    assert "code" not in query
    assert query["state"] == ["xyz123"]
    assert location.startswith("https://app.example.com/oauth/callback?")


def test_code_gives_a_user_token_once_then_40163(api):
    _, query = click(api, authorize(api), "approve")
    grant = exchange(api, query["code"][0])
    assert grant["openid"] == DEFAULT_FOLLOWER_OPENID
    assert grant["scope"] == "snsapi_userinfo"
    assert grant["expires_in"] == 7200
    assert grant["access_token"] and grant["refresh_token"]
    reused = exchange(api, query["code"][0])
    assert reused["errcode"] == 40163


def test_code_expires_after_5_minutes_with_42003(api, wechat):
    code = wechat.issue_oauth_code()
    wechat.advance(300)
    assert exchange(api, code)["errcode"] == 42003


def test_unknown_code_answers_40029(api):
    assert exchange(api, "not-a-code")["errcode"] == 40029


def test_code_exchange_checks_the_app_credentials(api, wechat):
    assert exchange(api, wechat.issue_oauth_code(), secret="wrong")["errcode"] == 40125
    answer = api.get("/sns/oauth2/access_token", appid="wxother", secret=DEFAULT_SECRET,
                     code=wechat.issue_oauth_code(), grant_type="authorization_code")
    assert answer["errcode"] == 40013


def test_authorize_page_serves_the_follower_named_by_openid(api, wechat):
    wechat.add_follower(OTHER_USER, "李雷", headimgurl="https://thirdwx.qlogo.cn/lilei/132")
    page = authorize(api, openid=OTHER_USER)
    assert "李雷" in page.text
    _, query = click(api, page, "approve")
    assert exchange(api, query["code"][0])["openid"] == OTHER_USER


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"appid": ""}, 10012),
        ({"redirect_uri": ""}, 10011),
        ({"scope": ""}, 10010),
        ({"scope": "snsapi_login"}, 10005),
        ({"redirect_uri": "javascript:alert(1)"}, 10003),
        ({"appid": "wxsomeoneelse"}, 40013),
    ],
)
def test_bad_authorize_requests_show_wechats_error_page(api, overrides, errcode):
    page = authorize(api, **overrides)
    assert page.status_code == 200
    assert f'<span id="errcode">{errcode}</span>' in page.text
    assert "同意" not in page.text


def test_refresh_token_gives_a_new_access_token_and_expires_after_30_days(api, wechat):
    grant = exchange(api, wechat.issue_oauth_code())
    refreshed = api.get("/sns/oauth2/refresh_token", appid=DEFAULT_APPID, grant_type="refresh_token",
                        refresh_token=grant["refresh_token"])
    assert refreshed["access_token"] != grant["access_token"]
    assert refreshed["openid"] == grant["openid"]
    assert refreshed["expires_in"] == 7200
    checked = api.get("/sns/auth", access_token=refreshed["access_token"], openid=grant["openid"])
    assert checked["errcode"] == 0
    wechat.advance(30 * 86400)
    expired = api.get("/sns/oauth2/refresh_token", appid=DEFAULT_APPID, grant_type="refresh_token",
                      refresh_token=grant["refresh_token"])
    assert expired["errcode"] == 42002


def test_unknown_refresh_token_answers_40030(api):
    answer = api.get("/sns/oauth2/refresh_token", appid=DEFAULT_APPID, grant_type="refresh_token",
                     refresh_token="nope")
    assert answer["errcode"] == 40030


def test_userinfo_gives_nickname_and_avatar_but_blank_sex_and_region(api, wechat):
    grant = exchange(api, wechat.issue_oauth_code(scope="snsapi_userinfo"))
    info = api.get("/sns/userinfo", access_token=grant["access_token"], openid=grant["openid"], lang="zh_CN")
    assert info["openid"] == DEFAULT_FOLLOWER_OPENID
    assert info["nickname"] == "沙盒测试用户"
    assert info["headimgurl"].startswith("https://thirdwx.qlogo.cn/")
    assert (info["sex"], info["province"], info["city"], info["country"]) == (0, "", "", "")
    assert info["privilege"] == []


def test_userinfo_with_a_snsapi_base_token_answers_48001(api, wechat):
    grant = exchange(api, wechat.issue_oauth_code(scope="snsapi_base"))
    assert grant["scope"] == "snsapi_base"
    info = api.get("/sns/userinfo", access_token=grant["access_token"], openid=grant["openid"])
    assert info["errcode"] == 48001


def test_userinfo_works_for_a_user_who_does_not_follow(api, wechat):
    grant = exchange(api, wechat.issue_oauth_code(openid=OTHER_USER))
    info = api.get("/sns/userinfo", access_token=grant["access_token"], openid=OTHER_USER)
    assert info["nickname"] == "微信用户"
    users = api.get("/cgi-bin/user/get", access_token=api.classic_token())
    assert OTHER_USER not in users["data"]["openid"]


def test_sns_auth_checks_token_and_openid(api, wechat):
    grant = exchange(api, wechat.issue_oauth_code())
    token, openid = grant["access_token"], grant["openid"]
    assert api.get("/sns/auth", access_token=token, openid=openid) == {"errcode": 0, "errmsg": "ok"}
    assert api.get("/sns/auth", access_token=token, openid=OTHER_USER)["errcode"] == 40003
    assert api.get("/sns/auth", access_token="bogus", openid=openid)["errcode"] == 40001
    assert api.get("/sns/auth", openid=openid)["errcode"] == 41001
    wechat.advance(7200)
    assert api.get("/sns/auth", access_token=token, openid=openid)["errcode"] == 42001
    assert api.get("/sns/userinfo", access_token=token, openid=openid)["errcode"] == 42001


def test_user_token_is_not_a_base_access_token(api, wechat):
    grant = exchange(api, wechat.issue_oauth_code())
    assert api.errcode_with(grant["access_token"]) == 40001


def test_sandbox_code_helper_gives_a_code_without_the_page(api):
    answer = api.post("/sandbox/oauth/code", {"openid": OTHER_USER, "scope": "snsapi_base"})
    assert answer["errcode"] == 0
    assert answer["expires_in"] == 300
    grant = exchange(api, answer["code"])
    assert (grant["openid"], grant["scope"]) == (OTHER_USER, "snsapi_base")
    refused = api.session.post(api.base_url + "/sandbox/oauth/code", json={"scope": "snsapi_all"}, timeout=10)
    assert refused.status_code == 400
