"""Which section of the replies file answers each kind of push: every routing branch of RuleSet.find_reply
with a rules file whose replies all differ, so that a push routed to the wrong section shows. Found
unpinned by the mutation run (`make mutate`, docs/testing.md). Pure: parsing and matching only."""

from __future__ import annotations

import textwrap

import pytest

from tests.wechat_requests import fixture, parsed_message
from weixin.rules import parse_rules

RULES = parse_rules(
    textwrap.dedent(
        """\
        keywords:
          - match: hello
            reply: keyword hello
        messages:
          voice: voice {recognition}
          voice_unrecognized: voice without text
          image: an image
          unknown: an unknown message
        events:
          subscribe: subscribed
          scan: scanned
          click: a click without a menu rule
          unknown: an unknown event
        menu:
          V1001_TODAY: today from the menu
        scenes:
          "1001": scene 1001
          poster_2026: the poster
        """
    ),
    "routing.yaml",
)


def push(fields: dict[str, str]) -> object:
    values = {"ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oFollower", "CreateTime": "1409735668", **fields}
    body = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in values.items())
    return parsed_message(f"<xml>{body}</xml>")


def fixture_push(name: str, **replace: str) -> object:
    text = fixture(name).decode()
    for old, new in replace.items():
        text = text.replace(old, new)
    return parsed_message(text)


@pytest.mark.parametrize(
    ("message", "rule", "reply"),
    [
        (push({"MsgType": "text", "Content": "hello", "MsgId": "1"}), "keywords[0]", "keyword hello"),
        (push({"MsgType": "voice", "Recognition": "hi there", "MsgId": "2"}), "messages.voice", "voice {recognition}"),
        (push({"MsgType": "voice", "Recognition": "  ", "MsgId": "3"}), "messages.voice_unrecognized",
         "voice without text"),
        (fixture_push("messages/voice_unrecognized.xml"), "messages.voice_unrecognized", "voice without text"),
        (fixture_push("messages/image.xml"), "messages.image", "an image"),
        (fixture_push("messages/unknown_type.xml"), "messages.unknown", "an unknown message"),
        (fixture_push("events/subscribe.xml"), "events.subscribe", "subscribed"),
        (fixture_push("events/subscribe_qrscene.xml"), "scenes['1001']", "scene 1001"),
        (fixture_push("events/subscribe_qrscene.xml", qrscene_1001="qrscene_2002"), "events.subscribe", "subscribed"),
        (fixture_push("events/scan.xml"), "scenes['poster_2026']", "the poster"),
        (fixture_push("events/scan.xml", poster_2026="elsewhere"), "events.scan", "scanned"),
        (push({"MsgType": "event", "Event": "subscribe", "EventKey": "scanbarcode|EAN|123"}), "events.subscribe",
         "subscribed"),
        (fixture_push("events/click.xml"), "menu['V1001_TODAY']", "today from the menu"),
        (fixture_push("events/click.xml", V1001_TODAY="V9"), "events.click (no menu rule)",
         "a click without a menu rule"),
        (fixture_push("events/unknown.xml"), "events.unknown", "an unknown event"),
    ],
)
def test_each_kind_of_push_is_answered_by_its_own_section(message: object, rule: str, reply: str) -> None:
    match = RULES.find_reply(message)
    assert match.rule.startswith(rule)
    assert match.reply is not None and match.reply.value.text == reply


def test_a_section_without_a_rule_for_the_push_gives_no_reply_and_names_the_missing_rule() -> None:
    match = RULES.find_reply(fixture_push("messages/video.xml"))
    assert (match.reply, match.rule) == (None, "messages.video")
