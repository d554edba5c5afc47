"""Every refusal of the replies checker is one line naming the file, the line, the rule and the problem,
for each kind of reply (`make check-replies` prints these lines). Found unpinned by the mutation run
(`make mutate`, docs/testing.md): most error paths had never run. Pure: parsing only."""

from __future__ import annotations

import logging

import pytest

from weixin.replies import RulesError, parse_rules

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
        ("events:\n  subscribe:\n    handler: 'weixin.replies:MESSAGE_KINDS'\n",
         "bad.yaml line 3 (events.subscribe): handler 'weixin.replies:MESSAGE_KINDS' is not callable"),
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
