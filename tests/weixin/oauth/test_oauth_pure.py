"""The pure parts of web authorization: URLs, state, cookies, signing, the profile view, the settings."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from wechatpy.oauth import WeChatOAuth

from weixin.config import ConfigError, load_settings
from weixin.oauth.authorize import (
    authorize_url,
    callback_url,
    new_state,
    scope_for,
    states_match,
)
from weixin.oauth.profile import WITHHELD, avatar_url, profile_view
from weixin.oauth.profile_link import profile_link_articles
from weixin.oauth.sessions import (
    CookieSigner,
    Session,
    SessionStore,
    cookie_header,
    derive_session_secret,
    signing_secret,
)
from weixin.oauth.sns_client import Grant

OPEN = "https://open.weixin.qq.com"
# wechatpy's tests/test_oauth.py expectation (protocol.md §7).
WECHATPY_EXPECTED = (
    "https://open.weixin.qq.com/connect/oauth2/authorize?appid=123456&redirect_uri=http%3A%2F%2Flocalhost"
    "&response_type=code&scope=snsapi_base#wechat_redirect"
)


def test_authorize_url_matches_wechatpys_test_expectation():
    assert authorize_url(OPEN, "123456", "http://localhost", "snsapi_base") == WECHATPY_EXPECTED


@pytest.mark.parametrize("scope", ["snsapi_base", "snsapi_userinfo"])
def test_authorize_url_with_state_is_the_same_string_as_wechatpy_builds(scope):
    redirect_uri = "https://example.com/wx/oauth/callback"
    ours = authorize_url(OPEN, "wx2c2769f8efd9abc2", redirect_uri, scope, "abc123XYZ")
    theirs = WeChatOAuth("wx2c2769f8efd9abc2", "secret", redirect_uri, scope=scope, state="abc123XYZ").authorize_url
    assert ours == theirs


def test_the_redirect_uri_is_fully_urlencoded_has_its_scheme_and_the_exact_callback_path():
    url = authorize_url(OPEN, "wx1", callback_url("https://example.com"), "snsapi_userinfo", "s1")
    encoded = re.search(r"redirect_uri=([^&]+)&", url).group(1)
    assert encoded == "https%3A%2F%2Fexample.com%2Foauth%2Fcallback"
    assert unquote(encoded) == "https://example.com/oauth/callback"
    assert url.endswith("&state=s1#wechat_redirect")
    assert url.count("#") == 1


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://example.com", "https://example.com/oauth/callback"),
        ("https://example.com/", "https://example.com/oauth/callback"),
        ("http://example.com:8080/wx", "http://example.com:8080/wx/oauth/callback"),
        ("http://example.com:8080/wx/", "http://example.com:8080/wx/oauth/callback"),
    ],
)
def test_callback_url_joins_base_and_path_with_exactly_one_slash(base, expected):
    assert callback_url(base) == expected


def test_callback_url_refuses_a_base_without_scheme():
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        callback_url("example.com")


def test_authorize_url_refuses_an_unknown_scope_and_a_state_wechat_would_not_echo():
    with pytest.raises(ValueError):
        authorize_url(OPEN, "wx1", "https://e.com/cb", "snsapi_login")
    with pytest.raises(ValueError):
        authorize_url(OPEN, "wx1", "https://e.com/cb", "snsapi_base", "has space")


def test_scope_parameter_base_means_snsapi_base_and_anything_else_userinfo():
    assert scope_for("base") == "snsapi_base"
    assert scope_for("BASE") == "snsapi_base"
    assert scope_for(None) == "snsapi_userinfo"
    assert scope_for("evil") == "snsapi_userinfo"


def test_states_are_32_letters_or_digits_and_differ():
    states = {new_state() for _ in range(100)}
    assert len(states) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", state) for state in states)


def test_states_match_only_the_same_wellformed_state():
    assert states_match("abc123", "abc123")
    assert not states_match("abc123", "abc124")
    assert not states_match("abc123", "")
    assert not states_match("", "")
    assert not states_match(None, "abc123")
    assert not states_match("abc 123", "abc 123")


def test_cookies_are_httponly_lax_and_secure_only_on_https():
    plain = cookie_header("wx_session", "v", max_age=60)
    assert plain == "wx_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
    assert cookie_header("wx_session", "v", max_age=60, secure=True).endswith("; Secure")
    deleted = cookie_header("wx_session", "", max_age=0, path="/wx/")
    assert deleted.startswith("wx_session=; Path=/wx/; Max-Age=0; Expires=Thu, 01 Jan 1970")


def test_signed_cookies_refuse_forgeries_and_cannot_stand_in_for_each_other():
    signer = CookieSigner("a-session-secret-long-enough")
    state_cookie = signer.state_cookie("abc123", "snsapi_userinfo")
    assert signer.read_state_cookie(state_cookie) == {"state": "abc123", "scope": "snsapi_userinfo"}
    # Tamper with the signature's first character: the last one of a base64 signature carries padding bits,
    # so changing it can leave the decoded signature the same (this test failed now and then that way).
    payload, _, signature = state_cookie.rpartition(".")
    tampered = f"{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    assert signer.read_state_cookie(tampered) is None
    assert CookieSigner("another-secret-long-enough").read_state_cookie(state_cookie) is None
    session_cookie = signer.session_cookie("the-session-id")
    assert signer.read_session_cookie(session_cookie) == "the-session-id"
    assert signer.read_state_cookie(session_cookie) is None
    assert signer.read_session_cookie(state_cookie) is None
    assert signer.read_session_cookie(None) is None


def test_the_derived_session_secret_is_stable_and_does_not_contain_the_appsecret():
    derived = derive_session_secret("the-app-secret")
    assert derived == derive_session_secret("the-app-secret")
    assert derived != derive_session_secret("another-app-secret")
    assert "the-app-secret" not in derived and len(derived) == 64
    assert signing_secret("", "the-app-secret") == derived
    assert signing_secret("explicit-session-secret", "the-app-secret") == "explicit-session-secret"
    with pytest.raises(ValueError):
        signing_secret("", "")


def test_profile_view_says_plainly_when_wechat_withholds_gender_and_region():
    view = profile_view("oid", {"nickname": "小明", "sex": 0, "province": "", "city": "", "country": ""}, True)
    assert view.gender == WITHHELD and view.region == WITHHELD
    assert "2021" in view.withheld_note
    region = {"country": "中国", "province": "广东", "city": "广州"}
    given = profile_view("oid", {"nickname": "小明", "sex": 1, **region}, True)
    assert (given.gender, given.region, given.withheld_note) == ("男", "中国 广东 广州", "")


def test_profile_view_of_a_silent_authorization_has_only_the_openid():
    view = profile_view("oid", None, True)
    assert (view.openid, view.has_userinfo, view.withheld_note, view.avatar_url) == ("oid", False, "", "")


@pytest.mark.parametrize(
    ("url", "https_page", "expected"),
    [
        ("http://thirdwx.qlogo.cn/mmopen/x/132", True, "https://thirdwx.qlogo.cn/mmopen/x/132"),
        ("http://thirdwx.qlogo.cn/mmopen/x/132", False, "http://thirdwx.qlogo.cn/mmopen/x/132"),
        ("javascript:alert(1)", True, ""),
        ("//evil.example/x.png", True, ""),
        ("", True, ""),
        (None, True, ""),
    ],
)
def test_avatar_urls_are_http_or_https_only_and_upgraded_on_https_pages(url, https_page, expected):
    assert avatar_url(url, https_page) == expected


def test_the_keyword_card_links_to_login_under_the_public_base_url():
    (article,) = profile_link_articles("https://example.com/wx")
    assert article["url"] == "https://example.com/wx/oauth/login"
    assert article["title"]


def test_grants_and_sessions_keep_tokens_out_of_their_repr():
    grant = Grant("87_access", "86_refresh", "oid", "snsapi_userinfo", 1.0)
    session = Session.from_grant(grant, now=0)
    for text in (repr(grant), repr(session)):
        assert "87_access" not in text and "86_refresh" not in text


def test_used_states_are_remembered_and_sessions_round_trip_in_redis(redis_client):
    store = SessionStore(redis_client)
    assert store.use_state("abc123") is True
    assert store.use_state("abc123") is False
    session = Session.from_grant(Grant("87_access", "86_refresh", "oid", "snsapi_userinfo", 9e9))
    session_id = store.create(session)
    assert store.load(session_id) == session
    keys = [key.decode() for key in redis_client.keys("*")]
    assert not any(session_id in key or "abc123" in key for key in keys)
    store.delete(session_id)
    assert store.load(session_id) is None


def settings_with(**env: str):
    return load_settings({"WECHAT_TOKEN": "token123", **env}, dotenv_path=Path("/dev/null"))


def test_public_base_url_needs_its_scheme():
    with pytest.raises(ConfigError, match=r"^PUBLIC_BASE_URL must start with http:// or https://"):
        settings_with(PUBLIC_BASE_URL="example.com")
    assert settings_with(PUBLIC_BASE_URL="https://example.com/").public_base_url == "https://example.com"


def test_open_base_and_session_secret_settings():
    assert settings_with().open_base == "https://open.weixin.qq.com"
    with pytest.raises(ConfigError, match="WECHAT_OPEN_BASE"):
        settings_with(WECHAT_OPEN_BASE="open.weixin.qq.com")
    with pytest.raises(ConfigError, match="SESSION_SECRET must be at least 16"):
        settings_with(SESSION_SECRET="short")
    assert "session" not in repr(settings_with(SESSION_SECRET="a-long-enough-secret")).lower()
