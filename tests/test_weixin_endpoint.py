"""/weixin end to end: the app under real uWSGI, real Redis, real HTTP on loopback."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import redis
import requests
import yaml

from devstack.processes import free_port
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.waiting import wait_until
from tests.wechat_requests import (
    FIXTURES,
    deliver,
    fixture,
    open_encrypted_reply,
    post,
    prepare,
    reply_fields,
    signed_query,
    with_fresh_ids,
)

ROOT = Path(__file__).resolve().parent.parent
TRACEBACK_MARKERS = ("Traceback", "Error:", "Exception", 'File "', "internal server error")


@pytest.fixture(scope="module")
def test_replies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped replies plus rules whose handlers count their runs."""
    document = yaml.safe_load((ROOT / "replies.yaml").read_text())
    document["keywords"] = [
        {"match": "count-me", "reply": {"handler": "tests.counting_handlers:count_runs"}},
        {"match": "slow-count", "reply": {"handler": "tests.counting_handlers:slow_count_runs"}},
        {"match": "explode", "reply": {"handler": "tests.counting_handlers:explode"}},
        *document["keywords"],
    ]
    path = tmp_path_factory.mktemp("replies") / "replies.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def app(start_app, test_replies: Path):
    return start_app(REPLIES_FILE=str(test_replies))


@pytest.fixture()
def weixin(app) -> str:
    return app.url + "/weixin"


def send(url: str, xml: bytes, mode: str = "plain", **kwargs) -> requests.Response:
    return post(url, xml, TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID, **kwargs)


def text(content: str) -> bytes:
    return with_fresh_ids(fixture("messages/text.xml").replace("微博".encode(), content.encode()))


def assert_clean_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert len(response.text) < 200
    for marker in TRACEBACK_MARKERS:
        assert marker not in response.text


# --- GET: the console's URL check ------------------------------------------------------------


def test_get_with_a_valid_signature_echoes_echostr_exactly(weixin: str) -> None:
    response = requests.get(weixin, params=signed_query(TEST_TOKEN, echostr="4375120948345356249"), timeout=5)
    assert response.status_code == 200 and response.text == "4375120948345356249"


@pytest.mark.parametrize(
    "params",
    [
        {"signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "1", "echostr": "x"},
        {"timestamp": str(int(time.time())), "nonce": "1", "echostr": "x"},
        {"echostr": "x"},
    ],
)
def test_get_with_a_bad_or_missing_signature_is_403(weixin: str, params: dict) -> None:
    assert_clean_error(requests.get(weixin, params=params, timeout=5), 403)


def test_get_signed_with_another_token_is_403(weixin: str) -> None:
    params = signed_query("anothertoken", echostr="x")
    assert_clean_error(requests.get(weixin, params=params, timeout=5), 403)


def test_get_without_parameters_says_the_endpoint_works(weixin: str) -> None:
    response = requests.get(weixin, timeout=5)
    assert response.status_code == 200 and "endpoint is up" in response.text


# --- POST: the user's design -----------------------------------------------------------------


def test_weibo_text_gets_a_news_reply_with_to_and_from_swapped(weixin: str) -> None:
    response = send(weixin, text("微博"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    reply = reply_fields(response.text)
    assert reply["MsgType"] == "news" and reply["ArticleCount"] == "1"
    assert reply["ToUserName"] == "oFollower0000000000000000001" and reply["FromUserName"] == "gh_10f6c3c3ac5a"
    article = reply["Articles"]["item"]
    assert article["Title"] and article["Description"] and article["PicUrl"].startswith("https://")
    assert article["Url"].startswith("https://")


def test_weibo_in_safe_mode_gets_an_encrypted_envelope_that_verifies_and_decrypts(weixin: str) -> None:
    response = send(weixin, text("微博"), mode="safe")
    assert response.status_code == 200
    envelope = reply_fields(response.text)
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    reply = open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)
    assert reply["MsgType"] == "news" and reply["ToUserName"] == "oFollower0000000000000000001"
    assert reply["FromUserName"] == "gh_10f6c3c3ac5a"


def test_compatible_mode_decrypts_and_answers_encrypted(weixin: str) -> None:
    response = send(weixin, text("微博"), mode="compatible")
    reply = open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)
    assert reply["MsgType"] == "news"


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_the_same_message_three_times_runs_the_rule_once_and_gets_the_same_reply(
    weixin: str, redis_server, mode: str
) -> None:
    message = text("count-me")
    client = redis.Redis.from_url(redis_server.url)
    client.delete("test:handler-runs:count-me")
    # WeChat's retries are byte-identical: the same query string and the same (encrypted) body.
    query, body = prepare(message, TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
    replies = []
    for _ in range(3):
        response = deliver(weixin, query, body)
        assert response.status_code == 200
        if mode == "safe":
            replies.append(open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)["Content"])
        else:
            replies.append(reply_fields(response.text)["Content"])
    assert replies == ["handled count-me, run 1"] * 3
    assert int(client.get("test:handler-runs:count-me")) == 1


def test_a_retry_during_a_slow_first_delivery_waits_for_its_reply(weixin: str, redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.delete("test:handler-runs:slow-count")
    message = text("slow-count")
    query = signed_query(TEST_TOKEN)
    results: dict[str, requests.Response] = {}
    first = threading.Thread(target=lambda: results.update(first=send(weixin, message, query=query)))
    first.start()
    # The retry once the first delivery's handler has started (it counts its run, then takes a second).
    wait_until(lambda: client.get("test:handler-runs:slow-count") == b"1", timeout=10)
    results["retry"] = send(weixin, message, query=query)
    first.join()
    assert reply_fields(results["first"].text)["Content"] == "slowly handled slow-count, run 1"
    assert results["retry"].text == results["first"].text
    assert int(client.get("test:handler-runs:slow-count")) == 1


def test_a_failing_handler_is_logged_and_answered_with_success(weixin: str, app) -> None:
    response = send(weixin, text("explode"))
    assert response.status_code == 200 and response.text == "success"
    assert "reply failed" in app.process.wait_for_log("reply failed")


@pytest.mark.parametrize("path", sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("messages/*.xml")))
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_every_message_type_gets_a_reply(weixin: str, path: str, mode: str) -> None:
    response = send(weixin, with_fresh_ids(fixture(path)), mode=mode)
    assert response.status_code == 200
    if path.endswith("unknown_type.xml"):
        assert response.text == "success"
        return
    reply = open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID) if mode == "safe" else (
        reply_fields(response.text)
    )
    assert reply["MsgType"] == "text" or reply["MsgType"] == "news"
    assert reply["ToUserName"] == "oFollower0000000000000000001"


EVENT_ANSWERS = {
    "subscribe": "text", "subscribe_qrscene": "text", "scan": "text", "click": "news",
    "scancode_waitmsg": "text", "pic_sysphoto": "text", "pic_photo_or_album": "text", "pic_weixin": "text",
    "location_select": "text",
    "unsubscribe": None, "location": None, "view": None, "scancode_push": None,
    "templatesendjobfinish": None, "masssendjobfinish": None, "unknown": None,
}


@pytest.mark.parametrize(("event", "reply_type"), sorted(EVENT_ANSWERS.items()))
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_every_event_gets_a_sensible_answer(weixin: str, event: str, reply_type: str | None, mode: str) -> None:
    response = send(weixin, with_fresh_ids(fixture(f"events/{event}.xml")), mode=mode)
    assert response.status_code == 200
    if reply_type is None:
        assert response.text == "success"
        return
    reply = open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID) if mode == "safe" else (
        reply_fields(response.text)
    )
    assert reply["MsgType"] == reply_type


def test_subscribe_with_a_qr_scene_gets_the_scene_reply(weixin: str) -> None:
    reply = reply_fields(send(weixin, with_fresh_ids(fixture("events/subscribe_qrscene.xml"))).text)
    assert "线下活动" in reply["Content"]


def test_voice_answers_with_its_recognition(weixin: str) -> None:
    reply = reply_fields(send(weixin, with_fresh_ids(fixture("messages/voice.xml"))).text)
    assert "今天天气不错" in reply["Content"]


def test_location_tells_the_place_and_coordinates(weixin: str) -> None:
    reply = reply_fields(send(weixin, with_fresh_ids(fixture("messages/location.xml"))).text)
    assert "广州市天河区天河路" in reply["Content"] and "23.134521" in reply["Content"]


def test_unmatched_text_is_echoed_and_cdata_breakers_stay_well_formed(weixin: str) -> None:
    response = send(weixin, with_fresh_ids(fixture("attacks/cdata_injection.xml")))
    assert response.status_code == 200
    assert reply_fields(response.text)["Content"] == "break ]]>out</Content><evil/>"


# --- bad input -------------------------------------------------------------------------------

ATTACKS_400 = [
    "billion_laughs.xml", "quadratic_blowup.xml", "xxe_file.xml", "xxe_network.xml", "external_dtd.xml",
    "parameter_entities.xml", "lowercase_doctype.xml", "not_xml.json", "missing_msgtype.xml", "wrong_root.xml",
    "empty_root.xml", "unclosed_tag.xml", "invalid_utf8.xml", "control_characters.xml", "duplicated_tags.xml",
]


@pytest.mark.parametrize("name", ATTACKS_400)
def test_malformed_and_hostile_bodies_are_400_without_details(weixin: str, name: str) -> None:
    assert_clean_error(send(weixin, fixture(f"attacks/{name}")), 400)


def test_deep_nesting_under_the_size_limit_is_400(weixin: str) -> None:
    assert_clean_error(send(weixin, fixture("attacks/deep_nesting.xml")), 400)


def test_a_ten_megabyte_body_is_413(weixin: str) -> None:
    body = b"<xml><Content><![CDATA[" + b"A" * (10 * 1024 * 1024) + b"]]></Content></xml>"
    assert_clean_error(send(weixin, body), 413)


def test_an_empty_body_is_400(weixin: str) -> None:
    assert_clean_error(send(weixin, b""), 400)


def test_a_post_with_a_bad_signature_is_403(weixin: str) -> None:
    query = signed_query(TEST_TOKEN)
    query["signature"] = "f" * 40
    assert_clean_error(send(weixin, text("微博"), query=query), 403)


def test_a_post_signed_with_another_token_is_403(weixin: str) -> None:
    assert_clean_error(send(weixin, text("微博"), query=signed_query("othertoken99")), 403)


def test_a_timestamp_outside_the_window_is_403(weixin: str) -> None:
    stale = signed_query(TEST_TOKEN, timestamp=str(int(time.time()) - 3600))
    assert_clean_error(send(weixin, text("微博"), query=stale), 403)


def test_safe_mode_with_a_wrong_msg_signature_is_403(weixin: str) -> None:
    query = signed_query(TEST_TOKEN)
    body = b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[abcd]]></Encrypt></xml>"
    response = requests.post(
        weixin, params={**query, "encrypt_type": "aes", "msg_signature": "0" * 40}, data=body, timeout=5
    )
    assert_clean_error(response, 403)


def test_safe_mode_for_another_appid_is_403(weixin: str) -> None:
    response = post(weixin, text("微博"), TEST_TOKEN, "safe", TEST_AES_KEY, "wxanotherappid0000")
    assert_clean_error(response, 403)


@pytest.mark.parametrize("encrypt", ["!!!not-base64!!!", "QUJD", "A" * 64])
def test_safe_mode_with_a_corrupt_encrypt_is_400(weixin: str, encrypt: str) -> None:
    from utils import make_signature

    query = signed_query(TEST_TOKEN)
    signature = make_signature(TEST_TOKEN, query["timestamp"], query["nonce"], encrypt)
    query.update(encrypt_type="aes", msg_signature=signature)
    body = f"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    assert_clean_error(requests.post(weixin, params=query, data=body.encode(), timeout=5), 400)


# --- configurations ----------------------------------------------------------------------------


def test_messages_are_answered_when_redis_is_down(start_app) -> None:
    app = start_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    for _ in range(2):
        response = send(app.url + "/weixin", text("微博"))
        assert response.status_code == 200 and reply_fields(response.text)["MsgType"] == "news"
    assert "Redis unreachable" in app.process.wait_for_log("Redis unreachable")


def test_while_redis_is_down_retries_are_deduped_in_the_servers_shared_memory(start_app) -> None:
    app = start_app(workers=2, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    query, body = prepare(text("微博"), TEST_TOKEN)
    replies = [deliver(app.url + "/weixin", query, body).text for _ in range(3)]
    assert replies[0] == replies[1] == replies[2] and "<MsgType><![CDATA[news]]>" in replies[0]
    app.process.wait_for_log("dedupe=retry-answered-local", count=2)
    log = app.process.wait_for_log("dedupe=first-local")
    assert "dedupe=first-local" in log and log.count("dedupe=retry-answered-local") >= 2


def test_required_encryption_refuses_plaintext(start_app) -> None:
    app = start_app(WECHAT_REQUIRE_ENCRYPTION="1")
    assert_clean_error(send(app.url + "/weixin", text("微博")), 403)
    response = send(app.url + "/weixin", text("微博"), mode="safe")
    assert open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)["MsgType"] == "news"


def test_compatible_mode_without_a_key_falls_back_to_the_plaintext_fields(start_app) -> None:
    app = start_app(WECHAT_ENCODING_AES_KEY="")
    response = send(app.url + "/weixin", text("微博"), mode="compatible")
    assert response.status_code == 200 and reply_fields(response.text)["MsgType"] == "news"
    safe = send(app.url + "/weixin", text("微博"), mode="safe")
    assert safe.status_code == 200 and safe.text == "success"
    assert "WECHAT_ENCODING_AES_KEY is not set" in app.process.wait_for_log("WECHAT_ENCODING_AES_KEY is not set")


# --- logging -----------------------------------------------------------------------------------


def test_one_log_line_per_request_without_secrets_or_content(fresh_app) -> None:
    # A fresh server of its own: the module's shared app may still hold another test's line of the same kind
    # in its log batch (flushed every 0.5 s), which would land after `before` was counted.
    app = fresh_app()
    weixin = app.url + "/weixin"
    marker = f"secretive-words-{time.time_ns()}"
    pattern = "POST mode=safe type=message:text rule=default"
    before = app.process.log_text().count(pattern)
    send(weixin, text(marker), mode="safe")
    deadline = time.monotonic() + 5
    while app.process.log_text().count(pattern) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    log = app.process.log_text()
    lines = [line for line in log.splitlines() if pattern in line]
    assert len(lines) == before + 1, log[-2000:]
    assert re.search(r"dedupe=\S+ reply=text status=200 ms=\d+\.\d", lines[-1])
    for secret in (marker, TEST_TOKEN, TEST_AES_KEY):
        assert secret not in log


def test_a_signed_query_replayed_with_another_body_is_403(weixin: str) -> None:
    query = signed_query(TEST_TOKEN)
    first = send(weixin, text("微博"), query=query)
    assert first.status_code == 200
    assert_clean_error(send(weixin, text("帮助"), query=query), 403)


def test_every_request_leaves_its_log_line_under_uwsgi(fresh_app) -> None:
    # A fresh server (its own log), so that the lines can be counted exactly.
    app = fresh_app(REPLIES_FILE=str(ROOT / "replies.yaml"))
    for _ in range(300):
        query, body = prepare(text("微博"), TEST_TOKEN)
        assert deliver(app.url + "/weixin", query, body).status_code == 200
    pattern = "POST mode=plain type=message:text"
    deadline = time.monotonic() + 5
    while app.process.log_text().count(pattern) < 300 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app.process.log_text().count(pattern) == 300
