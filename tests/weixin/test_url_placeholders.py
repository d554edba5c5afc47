"""Issue 13, item 12: placeholders inside the URL fields of a reply are URL-encoded; text fields are not."""

from __future__ import annotations

import pytest
import xmltodict

from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import (
    FIXTURES,
    fixture,
    open_encrypted_reply,
    parsed_message,
    post,
    reply_fields,
    with_fresh_ids,
)
from weixin.render import render_reply
from weixin.rules import parse_rules

HOSTILE = "a&b=c d#x"
HOSTILE_QUOTED = "a%26b%3Dc%20d%23x"


def fields(xml: str) -> dict:
    return xmltodict.parse(xml.encode("utf-8"))["xml"]


def text_message(content: str):
    return parsed_message(fixture("messages/text.xml").decode().replace("微博", content))


def click_event(key: str):
    return parsed_message(fixture("events/click.xml").decode().replace("V1001_TODAY", key))


def default_reply(yaml_reply: str):
    return parse_rules(f"default:\n{yaml_reply}\n", "t.yaml").default


def test_news_url_and_picurl_quote_the_placeholders_and_the_text_fields_keep_them() -> None:
    reply = default_reply(
        "  news: [{title: 'T {content}', description: 'D {content}', "
        "url: 'https://example.com/s?q={content}&from={openid}', picurl: 'https://example.com/p/{content}.png'}]"
    )
    message = text_message(HOSTILE)
    item = fields(render_reply(reply, message))["Articles"]["item"]
    assert item["Url"] == f"https://example.com/s?q={HOSTILE_QUOTED}&from={message.sender}"
    assert item["PicUrl"] == f"https://example.com/p/{HOSTILE_QUOTED}.png"
    assert item["Title"] == f"T {HOSTILE}" and item["Description"] == f"D {HOSTILE}"


def test_music_urls_quote_the_placeholders_and_the_text_fields_keep_them() -> None:
    ruleset = parse_rules(
        "events:\n  click:\n    music: {title: '{event_key}', description: 'D {event_key}', "
        "music_url: 'https://example.com/m?k={event_key}', hq_music_url: 'https://example.com/hq/{event_key}', "
        "thumb_media_id: TH}\n",
        "t.yaml",
    )
    music = fields(render_reply(ruleset.events["click"], click_event("k/1?x=y&z")))["Music"]
    assert music["MusicUrl"] == "https://example.com/m?k=k%2F1%3Fx%3Dy%26z"
    assert music["HQMusicUrl"] == "https://example.com/hq/k%2F1%3Fx%3Dy%26z"
    assert music["Title"] == "k/1?x=y&z" and music["Description"] == "D k/1?x=y&z"


@pytest.mark.parametrize(
    ("content", "quoted"),
    [
        ("微博", "%E5%BE%AE%E5%8D%9A"),
        ("../../admin", "..%2F..%2Fadmin"),
        ("javascript:alert(1)", "javascript%3Aalert%281%29"),
        ("<x>&\"", "%3Cx%3E%26%22"),
        ("100%", "100%25"),
        ("a+b", "a%2Bb"),
        ("", ""),
    ],
)
def test_a_url_placeholder_is_quoted_with_nothing_safe(content: str, quoted: str) -> None:
    reply = default_reply("  news: [{title: T, url: 'https://example.com/s?q={content}'}]")
    item = fields(render_reply(reply, text_message(content)))["Articles"]["item"]
    assert item["Url"] == f"https://example.com/s?q={quoted}"


def test_a_text_reply_keeps_the_follower_text_as_it_is() -> None:
    reply = default_reply("  text: 'see https://example.com/s?q={content}'")
    assert fields(render_reply(reply, text_message(HOSTILE)))["Content"] == f"see https://example.com/s?q={HOSTILE}"


def test_a_static_url_is_left_alone() -> None:
    reply = default_reply("  news: [{title: T, url: 'https://example.com/s?q=a b&c={{x}}'}]")
    item = fields(render_reply(reply, text_message(HOSTILE)))["Articles"]["item"]
    assert item["Url"] == "https://example.com/s?q=a b&c={x}"


# --- end to end, under real uWSGI --------------------------------------------------------------------


@pytest.fixture(scope="module")
def weixin(start_app) -> str:
    return start_app(REPLIES_FILE=str(FIXTURES / "replies" / "url_placeholders.yaml")).url + "/weixin"


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_a_news_reply_through_uwsgi_carries_the_quoted_url(weixin: str, mode: str) -> None:
    xml = with_fresh_ids(fixture("messages/text.xml").replace("微博".encode(), HOSTILE.encode()))
    response = post(weixin, xml, TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
    assert response.status_code == 200, response.text
    reply = (open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID) if mode == "safe"
             else reply_fields(response.text))
    item = reply["Articles"]["item"]
    assert item["Url"] == f"https://example.com/s?q={HOSTILE_QUOTED}&from=oFollower0000000000000000001"
    assert item["PicUrl"] == "https://example.com/p/oFollower0000000000000000001.png"
    assert item["Title"] == f"你搜索的是 {HOSTILE}"
