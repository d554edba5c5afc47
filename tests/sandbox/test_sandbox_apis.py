"""The token-taking APIs: 41001/40001/42001 like WeChat, customer-service window, menu, ticket, users."""

from __future__ import annotations

import pytest
import requests

from sandbox.platform import DEFAULT_FOLLOWER_OPENID

FOLLOWER = "oFollowerForCustomSend000001"

# (method, path, query beyond access_token, JSON body) of every token-taking API.
TOKEN_APIS = [
    ("POST", "/cgi-bin/message/custom/send", {}, {"touser": DEFAULT_FOLLOWER_OPENID, "msgtype": "text",
                                                  "text": {"content": "hi"}}),
    ("GET", "/cgi-bin/getcallbackip", {}, None),
    ("POST", "/cgi-bin/menu/create", {}, {"button": [{"type": "click", "name": "今日", "key": "TODAY"}]}),
    ("GET", "/cgi-bin/menu/get", {}, None),
    ("GET", "/cgi-bin/menu/delete", {}, None),
    ("GET", "/cgi-bin/ticket/getticket", {"type": "jsapi"}, None),
    ("GET", "/cgi-bin/user/get", {}, None),
    ("GET", "/cgi-bin/user/info", {"openid": DEFAULT_FOLLOWER_OPENID, "lang": "zh_CN"}, None),
]
API_IDS = [path for _, path, _, _ in TOKEN_APIS]


def call(api, method, path, query, body, **token):
    if method == "GET":
        return api.get(path, **query, **token)
    return api.post(path, body, **query, **token)


@pytest.mark.parametrize(("method", "path", "query", "body"), TOKEN_APIS, ids=API_IDS)
def test_api_without_access_token_answers_41001(api, method, path, query, body):
    assert call(api, method, path, query, body)["errcode"] == 41001


@pytest.mark.parametrize(("method", "path", "query", "body"), TOKEN_APIS, ids=API_IDS)
def test_api_with_an_unknown_token_answers_40001(api, method, path, query, body):
    answer = call(api, method, path, query, body, access_token="88_forged")
    assert answer["errcode"] == 40001
    assert "access_token is invalid or not latest" in answer["errmsg"]


@pytest.mark.parametrize(("method", "path", "query", "body"), TOKEN_APIS, ids=API_IDS)
def test_api_with_a_superseded_token_answers_40001_after_the_overlap(api, wechat, method, path, query, body):
    old = api.classic_token()
    api.classic_token()
    wechat.advance(301)
    assert call(api, method, path, query, body, access_token=old)["errcode"] == 40001


@pytest.mark.parametrize(("method", "path", "query", "body"), TOKEN_APIS, ids=API_IDS)
def test_api_with_an_expired_token_answers_42001(api, wechat, method, path, query, body):
    token = api.stable()["access_token"]
    wechat.advance(7200)
    assert call(api, method, path, query, body, access_token=token)["errcode"] == 42001


@pytest.mark.parametrize(("method", "path", "query", "body"), TOKEN_APIS, ids=API_IDS)
def test_api_accepts_classic_and_stable_tokens(api, wechat, method, path, query, body):
    wechat.follower_interacted(DEFAULT_FOLLOWER_OPENID)
    for token in (api.classic_token(), api.stable()["access_token"]):
        answer = call(api, method, path, query, body, access_token=token)
        assert answer.get("errcode", 0) in (0, 46003), answer


def test_unknown_path_is_a_404_with_errcode_40066(api):
    response = api.session.get(api.base_url + "/cgi-bin/no/such/api", timeout=10)
    assert response.status_code == 404
    assert response.json()["errcode"] == 40066


def test_wrong_http_method_answers_43001_or_43002(api):
    token = api.classic_token()
    assert api.post("/cgi-bin/getcallbackip", {}, access_token=token)["errcode"] == 43001
    assert api.get("/cgi-bin/message/custom/send", access_token=token)["errcode"] == 43002


def test_json_answers_carry_wechats_content_type_and_raw_utf8(api, wechat):
    wechat.add_follower("oNicknameFollower00000000001", "小明")
    response = api.session.get(api.base_url + "/cgi-bin/getcallbackip",
                               params={"access_token": api.classic_token()}, timeout=10)
    assert response.headers["Content-Type"] == "application/json; encoding=utf-8"
    assert response.json() == {"ip_list": ["127.0.0.1"]}


# ------------------------------------------------------------------------- customer-service messages


def send(api, token, message):
    return api.post("/cgi-bin/message/custom/send", message, access_token=token)


def text_to(openid, content="你好"):
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


def test_custom_message_needs_an_open_48_hour_window(api, wechat):
    token = api.classic_token()
    wechat.add_follower(FOLLOWER, "小红")
    assert send(api, token, text_to(FOLLOWER))["errcode"] == 45015
    wechat.follower_interacted(FOLLOWER)
    assert send(api, token, text_to(FOLLOWER))["errcode"] == 0
    wechat.advance(48 * 3600)
    token = api.classic_token()
    answer = send(api, token, text_to(FOLLOWER))
    assert answer["errcode"] == 45015
    assert "response out of time limit" in answer["errmsg"]


def test_custom_message_to_an_unknown_follower_answers_45015(api):
    assert send(api, api.classic_token(), text_to("oNobodyKnowsThisOpenid000001"))["errcode"] == 45015


def test_accepted_custom_messages_are_recorded_in_order(api, wechat):
    token = api.classic_token()
    wechat.follower_interacted(FOLLOWER)
    first = text_to(FOLLOWER, "第一条 <b>&]]>")
    second = {"touser": FOLLOWER, "msgtype": "image", "image": {"media_id": "MEDIA_ID"}}
    assert send(api, token, first)["errcode"] == 0
    assert send(api, token, text_to("oNobodyKnowsThisOpenid000001"))["errcode"] == 45015
    assert send(api, token, second)["errcode"] == 0
    assert wechat.delivered() == [first, second]


def test_sixth_message_in_a_window_answers_45047_until_the_follower_writes_again(api, wechat):
    token = api.classic_token()
    wechat.follower_interacted(FOLLOWER)
    for number in range(5):
        assert send(api, token, text_to(FOLLOWER, f"#{number}"))["errcode"] == 0
    assert send(api, token, text_to(FOLLOWER, "#6"))["errcode"] == 45047
    wechat.follower_interacted(FOLLOWER)
    assert send(api, token, text_to(FOLLOWER, "#6 again"))["errcode"] == 0
    assert len(wechat.delivered()) == 6


def test_news_with_more_than_one_article_answers_45008(api, wechat):
    token = api.classic_token()
    wechat.follower_interacted(FOLLOWER)
    article = {"title": "标题", "description": "描述", "url": "https://example.com", "picurl": ""}
    two = {"touser": FOLLOWER, "msgtype": "news", "news": {"articles": [article, article]}}
    one = {"touser": FOLLOWER, "msgtype": "news", "news": {"articles": [article]}}
    assert send(api, token, two)["errcode"] == 45008
    assert send(api, token, one)["errcode"] == 0
    assert wechat.delivered() == [one]


@pytest.mark.parametrize(
    ("message", "errcode"),
    [
        ({"touser": "", "msgtype": "text", "text": {"content": "x"}}, 40003),
        ({"touser": FOLLOWER, "msgtype": "telegram", "telegram": {}}, 40008),
        ({"touser": FOLLOWER, "msgtype": "text"}, 47001),
        ({"touser": FOLLOWER, "msgtype": "text", "text": {"content": ""}}, 44004),
        ({"touser": FOLLOWER, "msgtype": "news", "news": {"articles": []}}, 44003),
    ],
)
def test_malformed_custom_messages_are_refused_and_not_recorded(api, wechat, message, errcode):
    wechat.follower_interacted(FOLLOWER)
    assert send(api, api.classic_token(), message)["errcode"] == errcode
    assert wechat.delivered() == []


def test_custom_send_body_that_is_not_json_answers_47001(api, wechat):
    answer = api.post("/cgi-bin/message/custom/send", raw=b"<xml/>", access_token=api.classic_token())
    assert answer["errcode"] == 47001


# ------------------------------------------------------------------------- menu, ticket, users

MENU = {
    "button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {"name": "菜单", "sub_button": [
            {"type": "view", "name": "搜索", "url": "http://www.soso.com/"},
            {"type": "click", "name": "赞一下我们", "key": "V1001_GOOD"},
        ]},
    ]
}


def test_menu_get_answers_46003_before_any_menu_exists(api):
    assert api.get("/cgi-bin/menu/get", access_token=api.classic_token())["errcode"] == 46003


def test_created_menu_is_returned_by_menu_get_and_gone_after_delete(api):
    token = api.classic_token()
    assert api.post("/cgi-bin/menu/create", MENU, access_token=token) == {"errcode": 0, "errmsg": "ok"}
    menu = api.get("/cgi-bin/menu/get", access_token=token)["menu"]
    assert menu["button"] == MENU["button"]
    assert api.get("/cgi-bin/menu/delete", access_token=token)["errcode"] == 0
    assert api.get("/cgi-bin/menu/get", access_token=token)["errcode"] == 46003


@pytest.mark.parametrize(
    ("menu", "errcode"),
    [
        ({"button": []}, 40016),
        ({"button": [{"type": "click", "name": f"b{n}", "key": "K"} for n in range(4)]}, 40016),
        ({"button": [{"type": "click", "name": "", "key": "K"}]}, 40018),
        ({"button": [{"type": "teleport", "name": "x", "key": "K"}]}, 40017),
        ({"button": [{"type": "click", "name": "x"}]}, 40019),
        ({"button": [{"type": "view", "name": "x"}]}, 40020),
        ({"button": [{"name": "x", "sub_button": [{"type": "click", "name": "s", "key": "K"}] * 6}]}, 40023),
        ({"button": [{"name": "x", "sub_button": [{"type": "click", "name": "s"}]}]}, 40026),
    ],
)
def test_invalid_menus_are_refused_with_wechats_errcode(api, menu, errcode):
    token = api.classic_token()
    assert api.post("/cgi-bin/menu/create", menu, access_token=token)["errcode"] == errcode
    assert api.get("/cgi-bin/menu/get", access_token=token)["errcode"] == 46003


def test_jsapi_ticket_lives_7200_seconds(api):
    answer = api.get("/cgi-bin/ticket/getticket", access_token=api.classic_token(), type="jsapi")
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert answer["expires_in"] == 7200
    assert len(answer["ticket"]) >= 64


def test_ticket_of_an_unknown_type_answers_40097(api):
    answer = api.get("/cgi-bin/ticket/getticket", access_token=api.classic_token(), type="x")
    assert answer["errcode"] == 40097


def test_user_get_lists_followers_then_an_empty_page(api, wechat):
    wechat.add_follower("oSecondFollower0000000000002", "二号")
    wechat.add_follower("oThirdFollower00000000000003", "三号")
    token = api.classic_token()
    page = api.get("/cgi-bin/user/get", access_token=token)
    openids = [DEFAULT_FOLLOWER_OPENID, "oSecondFollower0000000000002", "oThirdFollower00000000000003"]
    assert page == {"total": 3, "count": 3, "data": {"openid": openids}, "next_openid": openids[-1]}
    rest = api.get("/cgi-bin/user/get", access_token=token, next_openid=page["next_openid"])
    assert rest == {"total": 3, "count": 0, "next_openid": ""}


def test_user_info_blanks_nickname_sex_and_region_like_wechat_since_2021(api, wechat):
    wechat.add_follower(FOLLOWER, "小红", headimgurl="https://thirdwx.qlogo.cn/x/132")
    info = api.get("/cgi-bin/user/info", access_token=api.classic_token(), openid=FOLLOWER, lang="zh_CN")
    assert info["subscribe"] == 1
    assert info["openid"] == FOLLOWER
    blanked = (info["nickname"], info["headimgurl"], info["sex"], info["province"], info["city"])
    assert blanked == ("", "", 0, "", "")


def test_user_info_of_an_unknown_openid_answers_40003(api):
    answer = api.get("/cgi-bin/user/info", access_token=api.classic_token(), openid="oUnknown")
    assert answer["errcode"] == 40003


def test_keep_alive_connection_serves_many_requests(api):
    token = api.classic_token()
    with requests.Session() as session:
        for _ in range(50):
            response = session.get(api.base_url + "/cgi-bin/getcallbackip", params={"access_token": token},
                                   timeout=10)
            assert response.status_code == 200
        assert response.raw.version == 11
