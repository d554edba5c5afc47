"""Pure parts: a handler's answer as custom/send JSON, the `background` key of the replies file, REPLY_DEADLINE."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from slow_replies.custom_message import NotSendable, custom_message, encode
from tests.wechat_requests import fixture, parsed_message
from weixin.config import ConfigError, load_settings
from weixin.render import reply_from_value
from weixin.rules import RulesError, handler_path, load_rules, parse_rules

ROOT = Path(__file__).resolve().parent.parent.parent
MESSAGE = parsed_message(fixture("messages/text.xml").decode())
EVENT = parsed_message(fixture("events/subscribe.xml").decode())


def test_text_becomes_a_text_message_with_braces_and_chinese_kept() -> None:
    body = custom_message("oX", reply_from_value("书名 {未知} ]]>", MESSAGE))
    assert body == {"touser": "oX", "msgtype": "text", "text": {"content": "书名 {未知} ]]>"}}
    assert "书名" in encode(body).decode("utf-8")  # not \\u escapes


def test_articles_become_a_news_message_with_one_article() -> None:
    articles = [{"title": f"第{n}本", "description": "d", "url": "https://e.com/1", "picurl": "https://e.com/1.jpg"}
                for n in range(3)]
    body = custom_message("oX", reply_from_value(articles, EVENT))  # an event allows 8 passively
    assert body["msgtype"] == "news"
    assert body["news"]["articles"] == [{"title": "第0本", "description": "d", "url": "https://e.com/1",
                                         "picurl": "https://e.com/1.jpg"}]
    assert json.loads(encode(body)) == body


def test_media_replies_keep_their_media_id_and_nothing_stays_nothing() -> None:
    assert custom_message("oX", reply_from_value({"image": "MEDIA"}, MESSAGE))["image"] == {"media_id": "MEDIA"}
    music = custom_message("oX", reply_from_value({"music": {"title": "t", "music_url": "u", "thumb_media_id": "m"}},
                                                  MESSAGE))
    assert music["music"]["musicurl"] == "u" and music["music"]["thumb_media_id"] == "m"
    assert custom_message("oX", reply_from_value(None, MESSAGE)) is None


def test_an_echo_reply_has_no_customer_service_form() -> None:
    from weixin.rules import Reply

    with pytest.raises(NotSendable):
        custom_message("oX", Reply("echo"))


def rules(text: str):
    return parse_rules(textwrap.dedent(text), "test.yaml")


def test_a_handler_can_opt_in_to_the_background() -> None:
    ruleset = rules("""
        keywords:
          - regex: '^\\d{13}$'
            reply: {handler: "handlers.books:lookup", background: true}
          - match: now
            reply: {handler: "handlers.books:lookup", background: false}
        """)
    assert ruleset.keywords[0].reply.background and not ruleset.keywords[1].reply.background
    assert handler_path(ruleset.keywords[0].reply.value) == "handlers.books:lookup"


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ('{text: "hi", background: true}', "background applies to handler replies only"),
        ('{handler: "handlers.books:lookup", background: "yes"}', "background takes true or false"),
        ('{handler: "handlers.books:lookup", backgroud: true}', "a reply needs exactly one of"),
        ('{handler: "random:random", background: true}', "must be a module-level function"),
    ],
)
def test_background_is_checked_at_load_with_the_line(reply: str, problem: str) -> None:
    with pytest.raises(RulesError) as error:
        rules(f"""
            keywords:
              - match: x
                reply: {reply}
            """)
    assert problem in str(error.value) and "line 4" in str(error.value)


def test_the_shipped_file_sends_isbns_to_the_background_book_lookup() -> None:
    shipped = load_rules(ROOT / "replies.yaml")
    for text in ("9787111547426", "ISBN 978-7-111-54742-6", "7 111 54742 X", "isbn：0140328726"):
        match = shipped.match_text(text)
        assert match.reply.kind == "handler" and match.reply.background, text
        assert handler_path(match.reply.value) == "handlers.books:lookup"
    for text in ("帮助", "13812345678", "12345", "微博"):
        assert handler_path(getattr(shipped.match_text(text).reply, "value", None)) != "handlers.books:lookup", text


def test_the_reply_deadline_defaults_to_3_5_s_and_stays_below_harakiri() -> None:
    settings = load_settings({"WECHAT_TOKEN": "abcdef"}, Path("/dev/null"))
    assert settings.reply_deadline == 3.5
    assert load_settings({"WECHAT_TOKEN": "abcdef", "REPLY_DEADLINE": "1"}, Path("/dev/null")).reply_deadline == 1.0
    for bad in ("4.5", "3.95", "nan", "0.05"):
        with pytest.raises(ConfigError, match="REPLY_DEADLINE") as error:
            load_settings({"WECHAT_TOKEN": "abcdef", "REPLY_DEADLINE": bad}, Path("/dev/null"))
        assert bad == "0.05" or "harakiri" in str(error.value)


def test_the_book_source_is_configurable() -> None:
    settings = load_settings({"WECHAT_TOKEN": "abcdef", "BOOKS_API_BASE": "http://127.0.0.1:9/"}, Path("/dev/null"))
    assert settings.books_api_base == "http://127.0.0.1:9"
    assert load_settings({"WECHAT_TOKEN": "abcdef"}, Path("/dev/null")).books_api_base == "https://openlibrary.org"
    with pytest.raises(ConfigError, match="BOOKS_API_BASE"):
        load_settings({"WECHAT_TOKEN": "abcdef", "BOOKS_API_BASE": "openlibrary.org"}, Path("/dev/null"))
