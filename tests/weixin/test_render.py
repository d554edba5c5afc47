"""Rendering replies: every reply type as WeChat expects it, well-formed whatever the follower typed."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmltodict

from tests.wechat_requests import fixture, parsed_message
from weixin.config import load_settings
from weixin.messages import parse
from weixin.render import HandlerContext, HandlerResultError, render_reply, reply_from_value
from weixin.rules import Reply, parse_rules


def text_message(content: str):
    return parsed_message(fixture("messages/text.xml").decode().replace("微博", content))


def fields(xml: str) -> dict:
    xml_document = xml.encode("utf-8")
    return xmltodict.parse(xml_document)["xml"]


def render_rule(yaml_reply: str, message) -> str | None:
    ruleset = parse_rules(f"events:\n  click:\n{yaml_reply}\n", "t.yaml")
    return render_reply(ruleset.events["click"], message)


@pytest.mark.parametrize(
    ("reply_yaml", "msg_type", "expected"),
    [
        ("    text: 你好", "text", {"Content": "你好"}),
        ("    image: MEDIA1", "image", {"Image": {"MediaId": "MEDIA1"}}),
        ("    voice: MEDIA2", "voice", {"Voice": {"MediaId": "MEDIA2"}}),
        ("    video: {media_id: M3, title: T, description: D}", "video",
         {"Video": {"MediaId": "M3", "Title": "T", "Description": "D"}}),
        ("    music: {title: T, description: D, music_url: http://m, hq_music_url: http://hq, thumb_media_id: TH}",
         "music", {"Music": {"Title": "T", "Description": "D", "MusicUrl": "http://m", "HQMusicUrl": "http://hq",
                             "ThumbMediaId": "TH"}}),
    ],
)
def test_each_reply_type_renders_with_its_fields_and_the_to_from_swap(reply_yaml, msg_type, expected) -> None:
    message = parsed_message(fixture("events/click.xml").decode())
    reply = fields(render_rule(reply_yaml, message))
    assert reply["MsgType"] == msg_type
    assert reply["ToUserName"] == message.sender and reply["FromUserName"] == message.account
    assert int(reply["CreateTime"]) > 0
    for key, value in expected.items():
        assert reply[key] == value


def test_news_renders_article_count_and_items() -> None:
    message = parsed_message(fixture("events/click.xml").decode())
    articles = "[{title: A, description: d, picurl: http://p, url: http://u}, {title: B, url: http://v}]"
    xml = render_rule(f"    news: {articles}", message)
    reply = fields(xml)
    assert reply["MsgType"] == "news" and reply["ArticleCount"] == "2"
    items = reply["Articles"]["item"]
    assert [item["Title"] for item in items] == ["A", "B"]
    assert items[0]["PicUrl"] == "http://p" and items[0]["Url"] == "http://u" and items[0]["Description"] == "d"


@pytest.mark.parametrize("content", ["a]]>b", "]]>]]>", "<evil/>&amp;", "bell\x07 and nul\x00", "😀 中文"])
def test_echoed_text_stays_well_formed_xml(content: str) -> None:
    ruleset = parse_rules("default: {echo: true}\n")
    message = parse({**text_message("placeholder").fields, "Content": content})  # no XML could carry NUL
    xml = render_reply(ruleset.match_text(content).reply, message)
    parsed = fields(xml)
    assert parsed["Content"] == content.replace("\x07", "").replace("\x00", "")


def test_placeholders_take_values_from_the_message() -> None:
    ruleset = parse_rules("messages:\n  location: '{label} ({latitude}, {longitude}) {{literal}}'\n")
    message = parsed_message(fixture("messages/location.xml").decode())
    reply = fields(render_reply(ruleset.messages["location"], message))
    assert reply["Content"] == "广州市天河区天河路 (23.134521, 113.358803) {literal}"


def test_placeholder_values_with_braces_are_not_interpreted() -> None:
    ruleset = parse_rules("keywords:\n  - contains: x\n    reply: 'you said {content}'\n")
    reply = fields(render_reply(ruleset.match_text("x {openid}").reply, text_message("x {openid}")))
    assert reply["Content"] == "you said x {openid}"


def test_handlers_return_plain_values() -> None:
    message = text_message("hi")
    assert fields(render_reply(reply_from_value("plain {text}", message), message))["Content"] == "plain {text}"
    assert render_reply(reply_from_value(None, message), message) is None
    news = fields(render_reply(reply_from_value([{"title": "T", "url": "http://u"}], message), message))
    assert news["ArticleCount"] == "1"
    image = fields(render_reply(reply_from_value({"image": "MEDIA"}, message), message))
    assert image["Image"]["MediaId"] == "MEDIA"


def test_handler_articles_beyond_the_limit_are_cut_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    message = text_message("hi")
    articles = [{"title": f"T{i}", "url": "http://u"} for i in range(3)]
    reply = fields(render_reply(reply_from_value(articles, message), message))
    assert reply["ArticleCount"] == "1"
    assert "returned 3 articles" in caplog.text


@pytest.mark.parametrize("value", [42, {"unknown": 1}, [1, 2], {"text": "a", "news": []}])
def test_handler_values_that_are_not_replies_are_refused(value) -> None:
    with pytest.raises(HandlerResultError):
        reply_from_value(value, text_message("hi"))


def greet_with_context(message, context) -> str:
    return f"{context.settings.appid}: {message.content}"


def greet(message) -> str:
    return f"plain: {message.content}"


def test_a_handler_that_takes_a_second_argument_gets_the_process_context() -> None:
    context = HandlerContext(load_settings({"WECHAT_TOKEN": "abcdef", "WECHAT_APPID": "wxcontext"},
                                           Path("/dev/null")), redis=None)
    message = text_message("hi")
    with_context = Reply("handler", greet_with_context)
    assert fields(render_reply(with_context, message, context))["Content"] == "wxcontext: hi"
    assert fields(render_reply(Reply("handler", greet), message, context))["Content"] == "plain: hi"
    assert fields(render_reply(Reply("handler", greet), message))["Content"] == "plain: hi"
