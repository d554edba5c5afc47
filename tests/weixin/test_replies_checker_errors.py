"""Every refusal of the replies checker is one line naming the file, the line, the rule and the problem,
for each kind of reply (`make check-replies` prints these lines). Found unpinned by the mutation run
(`make mutate`, docs/testing.md): most error paths had never run. Pure: parsing only."""

from __future__ import annotations

import logging

import pytest

from weixin.rules import RulesError, parse_rules

NINE_ARTICLES = "".join(f"      - {{title: t{i}, url: 'https://e.example/{i}'}}\n" for i in range(9))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("messages: [a]\n", "bad.yaml line 1 (messages): messages is a mapping of name -> reply"),
        ("messages:\n  image:\n    video: abc\n",
         "bad.yaml line 3 (messages.image): video takes a mapping with description, media_id, title"),
        ("messages:\n  image:\n    video: {media_id: m, colour: red}\n",
         "bad.yaml line 3 (messages.image): video: unknown keys ['colour'] (allowed: description, media_id, title)"),
        ("messages:\n  image:\n    music: {title: t}\n",
         "bad.yaml line 3 (messages.image): music: missing ['thumb_media_id'] "
         "(allowed: description, hq_music_url, music_url, thumb_media_id, title)"),
        ("messages:\n  image:\n    video: {media_id: m, title: '{nope}'}\n",
         "bad.yaml line 3 (messages.image): unknown placeholder {nope}; use one of "),
        ("events:\n  subscribe:\n    news: []\n",
         "bad.yaml line 3 (events.subscribe): news takes a list of articles (title, description, picurl, url)"),
        ("events:\n  subscribe:\n    news:\n" + NINE_ARTICLES,
         "bad.yaml line 3 (events.subscribe): news has 9 articles but WeChat shows only 8 in an event reply; "
         "keep 8"),
        ("events:\n  subscribe:\n    news:\n      - just text\n",
         "bad.yaml line 3 (events.subscribe): an article is a mapping with title, description, picurl, url"),
        ("events:\n  subscribe:\n    news:\n      - {url: 'https://e.example/'}\n",
         "bad.yaml line 4 (events.subscribe): an article needs at least a title and a url"),
        ("events:\n  subscribe:\n    news:\n      - {title: t}\n",
         "bad.yaml line 4 (events.subscribe): an article needs at least a title and a url"),
        ("events:\n  subscribe:\n    news:\n      - {title: t, url: '{nope}'}\n",
         "bad.yaml line 4 (events.subscribe): unknown placeholder {nope}; use one of "),
        ("events:\n  subscribe:\n    handler: nocolon\n",
         "bad.yaml line 3 (events.subscribe): handler takes 'module:function'"),
        ("events:\n  subscribe:\n    handler: 'handlers.books:lookup'\n    background: 'yes'\n",
         "bad.yaml line 3 (events.subscribe): background takes true or false"),
        ("events:\n  subscribe:\n    handler: 'handlers.books:nope'\n",
         "bad.yaml line 3 (events.subscribe): handler 'handlers.books:nope' cannot be imported: "
         "module 'handlers.books' has no attribute 'nope'"),
        ("events:\n  subscribe:\n    handler: 'weixin.rules.model:MESSAGE_KINDS'\n",
         "bad.yaml line 3 (events.subscribe): handler 'weixin.rules.model:MESSAGE_KINDS' is not callable"),
        ("keywords:\n  - match: a\n    reply: {text: x, background: true}\n",
         "bad.yaml line 3 (keywords[0] match 'a'): background applies to handler replies only: "
         "{handler: ..., background: true}"),
    ],
)
def test_each_refusal_names_the_file_line_rule_and_problem(text: str, error: str) -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(text, "bad.yaml")
    lines = str(refused.value).splitlines()
    assert any(line.startswith(error) for line in lines), lines


def test_fields_of_a_video_or_music_reply_may_be_left_empty() -> None:
    rules = parse_rules("messages:\n  image:\n    video: {media_id: m, title: null}\n", "ok.yaml")
    fields = rules.messages["image"].value
    assert (fields["media_id"].text, fields["title"].text) == ("m", "")


def test_a_handler_under_its_old_module_name_loads_with_a_warning_naming_the_line(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        rules = parse_rules("events:\n  subscribe:\n    handler: 'books:lookup'\n", "old.yaml")
    assert rules.events["subscribe"].kind == "handler"
    assert "old.yaml line 3: handler 'books:lookup' is now 'handlers.books:lookup'; the old name still works" in [
        record.getMessage() for record in caplog.records
    ]


PLACEHOLDER_HELP = (
    "use one of account, content, description, event, event_key, format, label, latitude, longitude, media_id, "
    "msg_type, openid, pic_count, precision, recognition, scale, scan_result, scan_type, scene, title, url "
    "(write {{ and }} for literal braces)"
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("keywords:\n  - just text\n",  # a scalar has no line: none is printed
         "bad.yaml (keywords[0]): a keyword rule is a mapping: {match|contains|regex: ..., reply: ...}"),
        ("keywords:\n  - match: a\n    contains: b\n    reply: x\n",
         "bad.yaml line 2 (keywords[0]): a keyword rule needs exactly one of match/contains/regex, and reply"),
        ("keywords:\n  - match: a\n    colour: red\n    reply: x\n",
         "bad.yaml line 2 (keywords[0]): a keyword rule needs exactly one of match/contains/regex, and reply "
         "(unknown keys: ['colour'])"),
        ("keywords:\n  - match: a\n",
         "bad.yaml line 2 (keywords[0]): a keyword rule needs exactly one of match/contains/regex, and reply"),
        ("keywords:\n  - match: ''\n    reply: x\n",
         "bad.yaml line 2 (keywords[0]): match needs non-empty text (or a list of texts)"),
        ("keywords:\n  - match: []\n    reply: x\n",
         "bad.yaml line 2 (keywords[0]): match needs non-empty text (or a list of texts)"),
        ("keywords:\n  - contains: [a, {b: c}]\n    reply: x\n",
         "bad.yaml line 2 (keywords[0]): contains needs non-empty text (or a list of texts)"),
        ("keywords:\n  - regex: '(a'\n    reply: x\n", "bad.yaml line 2 (keywords[0]): bad regex '(a': missing ): (a"),
        ("messages:\n  image: [a, b]\n",
         "bad.yaml line 2 (messages.image): a reply is text, a mapping such as {text: ...}/{news: [...]}, or null"),
        ("messages:\n  image: {text: a, news: []}\n",
         "bad.yaml line 2 (messages.image): a reply needs exactly one of text, news, image, voice, video, music, "
         "echo, handler; got text, news"),
        ("messages:\n  image: {colour: a}\n",
         "bad.yaml line 2 (messages.image): a reply needs exactly one of text, news, image, voice, video, music, "
         "echo, handler; got colour"),
        ("messages:\n  image: {echo: yes please}\n", "bad.yaml line 2 (messages.image): echo takes `true`"),
        ("messages:\n  image: {image: '  '}\n",
         "bad.yaml line 2 (messages.image): image takes the media_id of uploaded material"),
        ("messages:\n  image: {voice: 3}\n",
         "bad.yaml line 2 (messages.image): voice takes the media_id of uploaded material"),
        ("messages:\n  image: {text: [a]}\n", "bad.yaml line 2 (messages.image): expected text, got list"),
        ("messages:\n  image: 'hi {nope}'\n",
         "bad.yaml line 2 (messages.image): unknown placeholder {nope}; " + PLACEHOLDER_HELP),
        ("messages:\n  image: 'hi {content!r}'\n",
         "bad.yaml line 2 (messages.image): unknown placeholder {content}; " + PLACEHOLDER_HELP),
        ("messages:\n  image: 'hi {content:>3}'\n",
         "bad.yaml line 2 (messages.image): unknown placeholder {content}; " + PLACEHOLDER_HELP),
        ("messages:\n  image: 'hi {'\n",
         "bad.yaml line 2 (messages.image): bad braces in text (Single '{' encountered in format string); "
         "write {{ and }} for literal braces"),
        ("messages:\n  colour: a\n",
         "bad.yaml line 2 (messages.colour): unknown messages kind; known: text, image, voice, voice_unrecognized, "
         "video, shortvideo, location, link, unknown"),
    ],
)
def test_each_refusal_of_a_rule_or_a_reply_is_its_exact_line(text: str, error: str) -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(text, "bad.yaml")
    assert str(refused.value).splitlines() == [error]


def test_a_single_article_may_be_written_as_a_mapping_instead_of_a_list() -> None:
    rules = parse_rules("events:\n  subscribe:\n    news: {title: t, url: 'https://e.example/'}\n", "ok.yaml")
    (article,) = rules.events["subscribe"].value
    assert (article["title"].text, article["url"].text) == ("t", "https://e.example/")


def test_a_background_handler_loads_as_a_background_reply() -> None:
    handler = "events:\n  subscribe:\n    handler: 'handlers.books:lookup'\n"
    assert parse_rules(handler + "    background: true\n", "ok.yaml").events["subscribe"].background is True
    assert parse_rules(handler, "ok.yaml").events["subscribe"].background is False


def test_echo_image_and_voice_replies_load_as_their_own_kinds() -> None:
    rules = parse_rules("default: {echo: true}\nmessages:\n  image: {image: ' m1 '}\n  voice: {voice: m2}\n", "ok.yaml")
    assert rules.default.kind == "echo"
    assert (rules.messages["image"].kind, rules.messages["image"].value) == ("image", "m1")
    assert (rules.messages["voice"].kind, rules.messages["voice"].value) == ("voice", "m2")
