"""Web authorization end to end: the app under real uWSGI and Redis, the fake WeChat over real HTTP."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import redis
import requests

from sandbox.platform import DEFAULT_FOLLOWER_NICKNAME, DEFAULT_FOLLOWER_OPENID
from tests.conftest import TEST_APPID, TEST_TOKEN
from tests.wechat_requests import fixture, post, reply_fields, with_fresh_ids
from tests.weixin.oauth.conftest import APP_SECRET, Visit, log_contains
from weixin.oauth.profile_link import NOT_CONFIGURED

TRACEBACK_MARKERS = ("Traceback", "Error:", "Exception", 'File "', "internal server error")
EXCHANGE = "/sns/oauth2/access_token"
REFRESH = "/sns/oauth2/refresh_token"
USERINFO = "/sns/userinfo"


def assert_friendly(page: requests.Response, status: int, title: str) -> None:
    assert page.status_code == status, page.text
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert f'<h2 class="weui-msg__title">{title}</h2>' in page.text
    assert "/static/weui/weui.min.css" in page.text
    for marker in TRACEBACK_MARKERS:
        assert marker not in page.text


def retry_link(page: requests.Response) -> str:
    return re.search(r'<a href="([^"]+)"[^>]*id="primary"', page.text).group(1)


def replace_cookie(session: requests.Session, name: str, value: str) -> None:
    for cookie in [cookie for cookie in session.cookies if cookie.name == name]:
        session.cookies.clear(cookie.domain, cookie.path, cookie.name)
    session.cookies.set(name, value, domain="127.0.0.1", path="/")


def cookie_headers(response: requests.Response) -> list[str]:
    return [value for name, value in response.raw.headers.items() if name.lower() == "set-cookie"]


def with_query(url: str, **params: str) -> str:
    base = url.split("?")[0]
    return base + "?" + "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())


# --- login ---------------------------------------------------------------------------------------


def test_login_redirects_to_the_authorize_url_with_an_exact_urlencoded_callback_and_a_state(visit, oauth_app, sandbox):
    answer = visit.get("/oauth/login", follow=False)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    callback = quote(oauth_app.url + "/oauth/callback", safe="")
    assert location.startswith(
        f"{sandbox.url}/connect/oauth2/authorize?appid={TEST_APPID}&redirect_uri={callback}"
        "&response_type=code&scope=snsapi_userinfo&state="
    )
    assert location.endswith("#wechat_redirect")
    state = parse_qs(urlsplit(location).query)["state"][0]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", state)
    (state_cookie,) = cookie_headers(answer)
    assert state_cookie.startswith("wx_oauth_state=")
    assert "HttpOnly" in state_cookie and "SameSite=Lax" in state_cookie and "Max-Age=600" in state_cookie
    assert "Secure" not in state_cookie  # the base URL is http here
    assert answer.headers["Cache-Control"] == "no-store"


def test_each_login_gets_a_new_state(visit):
    first = visit.get("/oauth/login", follow=False).headers["Location"]
    second = visit.get("/oauth/login", follow=False).headers["Location"]
    assert parse_qs(urlsplit(first).query)["state"] != parse_qs(urlsplit(second).query)["state"]


def test_scope_base_parameter_asks_for_snsapi_base(visit):
    location = visit.get("/oauth/login?scope=base", follow=False).headers["Location"]
    assert "&scope=snsapi_base&" in location


# --- approve and deny ----------------------------------------------------------------------------


def test_approve_shows_the_profile_with_avatar_nickname_openid_and_says_what_wechat_withholds(visit, oauth_app):
    page = visit.sign_in()
    assert page.url == oauth_app.url + "/me"
    assert page.status_code == 200
    assert f'<h1 class="profile__nickname" id="nickname">{DEFAULT_FOLLOWER_NICKNAME}</h1>' in page.text
    assert f'id="openid">{DEFAULT_FOLLOWER_OPENID}<' in page.text
    assert 'class="avatar__image" src="https://thirdwx.qlogo.cn/' in page.text
    assert f'alt="{DEFAULT_FOLLOWER_NICKNAME} 的头像"' in page.text
    assert 'id="gender">微信未提供<' in page.text and 'id="region">微信未提供<' in page.text
    assert "自 2021 年 10 月起，微信网页授权不再提供性别和地区" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    (session_cookie,) = [c for c in cookie_headers(page.history[-1]) if c.startswith("wx_session=")]
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Secure" not in session_cookie


def test_a_profile_with_gender_and_region_shows_them_and_escapes_the_nickname(visit, wechat):
    openid = "oProfileWithRegion000000000001"
    wechat.add_follower(openid, "<b>小明</b>", unionid="oUnion000000000000000000001")
    location = visit.authorize_page().url.replace("state=", f"openid={openid}&state=", 1)
    page = visit.session.get(location, timeout=10)
    answer = visit.session.get(visit.button_href(page, "approve"), timeout=10)
    assert "&lt;b&gt;小明&lt;/b&gt;" in answer.text and "<b>小明</b>" not in answer.text
    assert "oUnion000000000000000000001" in answer.text
    assert f'id="openid">{openid}<' in answer.text


def test_snsapi_base_shows_the_openid_only_and_offers_full_authorization(visit, wechat):
    userinfo_calls = wechat.calls(USERINFO)
    page = visit.sign_in(scope="base")
    assert page.status_code == 200
    assert f'id="openid">{DEFAULT_FOLLOWER_OPENID}<' in page.text
    assert "静默授权（snsapi_base）只能获得 openid" in page.text
    assert "授权获取昵称和头像" in page.text
    assert 'id="gender"' not in page.text
    assert wechat.calls(USERINFO) == userinfo_calls


def test_deny_shows_a_friendly_page_with_a_retry_link(visit, oauth_app, wechat):
    exchanges = wechat.calls(EXCHANGE)
    page = visit.get(visit.callback_url("deny"))
    assert_friendly(page, 200, "你拒绝了授权")
    assert retry_link(page) == oauth_app.url + "/oauth/login"
    assert wechat.calls(EXCHANGE) == exchanges
    assert log_contains(oauth_app, "authorization refused")


# --- codes WeChat refuses --------------------------------------------------------------------------


def test_a_reused_code_gets_40163_and_a_friendly_page(visit, oauth_app):
    first = visit.callback_url()
    assert visit.get(first).url == oauth_app.url + "/me"
    code = parse_qs(urlsplit(first).query)["code"][0]
    second = visit.callback_url()  # a fresh state for this visitor, but the old code
    state = parse_qs(urlsplit(second).query)["state"][0]
    page = visit.get(with_query(second, code=code, state=state))
    assert_friendly(page, 400, "授权码已使用")
    assert log_contains(oauth_app, "code exchange failed: errcode=40163")


@pytest.mark.moves_wechat_clock
def test_an_expired_code_gets_42003_and_a_friendly_page(visit, oauth_app, wechat):
    callback = visit.callback_url()
    wechat.advance(301)
    page = visit.get(callback)
    assert_friendly(page, 400, "授权已超时")
    assert log_contains(oauth_app, "code exchange failed: errcode=42003")


def test_an_invalid_code_gets_40029_and_a_friendly_page(visit, oauth_app):
    callback = visit.callback_url()
    state = parse_qs(urlsplit(callback).query)["state"][0]
    page = visit.get(with_query(callback, code="not-a-real-code", state=state))
    assert_friendly(page, 400, "授权码无效")
    assert log_contains(oauth_app, "code exchange failed: errcode=40029")


def test_another_wechat_error_is_a_friendly_502_naming_the_errcode(visit, wechat):
    callback = visit.callback_url()
    wechat.inject_error(EXCHANGE, -1)
    page = visit.get(callback)
    assert_friendly(page, 502, "微信授权失败")
    assert "errcode -1" in page.text


# --- state -------------------------------------------------------------------------------------------


def test_a_forged_state_is_refused_before_the_code_is_exchanged(visit, oauth_app, wechat):
    callback = visit.callback_url()
    code = parse_qs(urlsplit(callback).query)["code"][0]
    exchanges = wechat.calls(EXCHANGE)
    page = visit.get(with_query(callback, code=code, state="Forged0123456789Forged0123456789"))
    assert_friendly(page, 400, "链接已失效")
    assert wechat.calls(EXCHANGE) == exchanges
    assert log_contains(oauth_app, "callback rejected: state does not match the cookie")


def test_a_callback_without_the_state_cookie_is_refused(oauth_app, wechat):
    """An attacker's code and state, opened in the victim's browser (login CSRF): no cookie, no login."""
    attacker = Visit(oauth_app.url, requests.Session())
    callback = attacker.callback_url()
    exchanges = wechat.calls(EXCHANGE)
    victim = Visit(oauth_app.url, requests.Session())
    page = victim.get(callback)
    assert_friendly(page, 400, "链接已失效")
    assert wechat.calls(EXCHANGE) == exchanges
    assert "wx_session" not in victim.session.cookies


def test_a_forged_state_cookie_is_refused(oauth_app, wechat):
    visit = Visit(oauth_app.url, requests.Session())
    callback = visit.callback_url()
    state = parse_qs(urlsplit(callback).query)["state"][0]
    replace_cookie(visit.session, "wx_oauth_state", f'{{"state":"{state}","scope":"snsapi_userinfo"}}.forged.sig')
    exchanges = wechat.calls(EXCHANGE)
    assert_friendly(visit.get(callback), 400, "链接已失效")
    assert wechat.calls(EXCHANGE) == exchanges


def test_a_replayed_callback_with_its_state_cookie_is_refused(visit, oauth_app, wechat):
    callback = visit.callback_url()
    state_cookie = visit.session.cookies["wx_oauth_state"]
    assert visit.get(callback).url == oauth_app.url + "/me"
    replay = Visit(oauth_app.url, requests.Session())
    replace_cookie(replay.session, "wx_oauth_state", state_cookie)
    exchanges = wechat.calls(EXCHANGE)
    page = replay.get(callback)
    assert_friendly(page, 400, "链接已失效")
    assert wechat.calls(EXCHANGE) == exchanges
    assert log_contains(oauth_app, "callback rejected: state already used")


# --- the session ---------------------------------------------------------------------------------


def test_me_without_a_session_goes_to_login(visit, oauth_app):
    answer = visit.get("/me", follow=False)
    assert answer.status_code == 302
    assert answer.headers["Location"] == oauth_app.url + "/oauth/login"


def test_a_tampered_session_cookie_goes_to_login(visit, oauth_app):
    visit.sign_in()
    cookie = visit.session.cookies["wx_session"]
    replace_cookie(visit.session, "wx_session", cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    assert visit.get("/me", follow=False).headers["Location"] == oauth_app.url + "/oauth/login"


def test_the_session_lives_in_redis_under_a_hash_of_its_id_with_the_tokens_out_of_the_cookie(
    visit, redis_server
):
    visit.sign_in()
    cookie = visit.session.cookies["wx_session"]
    assert "87_" not in cookie and "86_" not in cookie  # the sandbox's token prefixes
    client = redis.Redis.from_url(redis_server.url)
    keys = [key.decode() for key in client.keys("wechat:oauth:session:*")]
    assert keys and all(re.fullmatch(r"wechat:oauth:session:[0-9a-f]{64}", key) for key in keys)
    assert all(0 < client.ttl(key) <= 30 * 86400 for key in keys)


@pytest.mark.moves_wechat_clock
def test_after_two_hours_the_profile_still_shows_through_the_refresh_token(visit, wechat):
    assert visit.sign_in().status_code == 200
    refreshes = wechat.calls(REFRESH)
    wechat.advance(2 * 3600 + 60)
    page = visit.get("/me")
    assert page.status_code == 200
    assert f'id="nickname">{DEFAULT_FOLLOWER_NICKNAME}<' in page.text
    assert "暂时连不上微信" not in page.text
    assert wechat.calls(REFRESH) == refreshes + 1
    # The refreshed token was kept: the next view needs no refresh.
    assert visit.get("/me").status_code == 200
    assert wechat.calls(REFRESH) == refreshes + 1


@pytest.mark.moves_wechat_clock
def test_when_the_refresh_token_is_dead_the_follower_authorizes_again(visit, oauth_app, wechat):
    visit.sign_in()
    wechat.advance(31 * 86400)
    answer = visit.get("/me", follow=False)
    assert answer.status_code == 302
    assert answer.headers["Location"] == oauth_app.url + "/oauth/login"
    assert any(c.startswith("wx_session=;") and "Max-Age=0" in c for c in cookie_headers(answer))
    assert log_contains(oauth_app, "refresh token no longer valid (errcode=42002)")


def test_logout_asks_then_clears_the_session_on_the_server_too(visit, oauth_app):
    visit.sign_in()
    stolen_cookie = visit.session.cookies["wx_session"]
    confirm = visit.get("/oauth/logout")
    assert_friendly(confirm, 200, "退出登录")
    assert f'<form method="post" action="{oauth_app.url}/oauth/logout">' in confirm.text
    done = visit.post("/oauth/logout")
    assert_friendly(done, 200, "已退出登录")
    assert "wx_session" not in visit.session.cookies
    assert visit.get("/me", follow=False).status_code == 302
    replay = Visit(oauth_app.url, requests.Session())
    replace_cookie(replay.session, "wx_session", stolen_cookie)
    assert replay.get("/me", follow=False).headers["Location"] == oauth_app.url + "/oauth/login"


# --- WeChat unreachable --------------------------------------------------------------------------


def test_wechat_too_slow_on_the_code_exchange_gives_a_friendly_page_in_time(visit, oauth_app, wechat):
    callback = visit.callback_url()
    wechat.set_latency(EXCHANGE, 4)
    try:
        page = visit.get(callback)
    finally:
        wechat.set_latency(EXCHANGE, 0)
    assert_friendly(page, 502, "暂时连不上微信")
    assert page.elapsed.total_seconds() < 3.9  # cut by the app's own timeout, not waited out (WeChat takes 4 s)
    assert log_contains(oauth_app, "code exchange failed: WeChat unreachable (/sns/oauth2/access_token: timed out)")


def test_wechat_unreachable_on_the_profile_page_shows_the_last_profile_with_a_notice(visit, wechat):
    visit.sign_in()
    wechat.set_latency(USERINFO, 4)
    try:
        page = visit.get("/me")
    finally:
        wechat.set_latency(USERINFO, 0)
    assert page.status_code == 200
    assert f'id="nickname">{DEFAULT_FOLLOWER_NICKNAME}<' in page.text
    assert 'id="notice">暂时连不上微信，下面是上次获取的资料。<' in page.text


# --- the keyword reply and the log ---------------------------------------------------------------


def test_the_keyword_reply_sends_a_news_card_with_the_login_link(oauth_app):
    for keyword in ("我的资料", "授权"):
        xml = with_fresh_ids(fixture("messages/text.xml")).replace("微博".encode(), keyword.encode())
        reply = reply_fields(post(oauth_app.url + "/weixin", xml, TEST_TOKEN).text)
        assert reply["MsgType"] == "news"
        assert reply["ArticleCount"] == "1"
        article = reply["Articles"]["item"]
        assert article["Url"] == oauth_app.url + "/oauth/login"
        assert article["Title"] == "查看我的微信资料"


def test_the_log_never_holds_the_secret_codes_or_tokens(visit, oauth_app):
    callback = visit.callback_url()
    code = parse_qs(urlsplit(callback).query)["code"][0]
    visit.get(callback)
    assert log_contains(oauth_app, "signed in openid=")
    log = oauth_app.process.log_text()
    assert APP_SECRET not in log
    assert code not in log
    assert not re.search(r"8[67]_[A-Za-z0-9_-]{20,}", log)
    assert "Traceback" not in log


def test_without_public_base_url_the_pages_and_the_keyword_say_it_is_not_configured(start_app):
    app = start_app()
    page = requests.get(app.url + "/oauth/login", allow_redirects=False, timeout=10)
    assert_friendly(page, 503, "网页授权尚未配置")
    xml = with_fresh_ids(fixture("messages/text.xml")).replace("微博".encode(), "授权".encode())
    reply = reply_fields(post(app.url + "/weixin", xml, TEST_TOKEN).text)
    assert reply["MsgType"] == "text"
    assert reply["Content"] == NOT_CONFIGURED
