"""The replies file: validation with line numbers, ordered matching, placeholders, hot reload, the check command."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import handlers.books
import weixin.oauth.profile_link
from tests.wechat_requests import fixture, parsed_message
from weixin.rules import LiveRules, RulesError, handler_path, load_rules, parse_rules

ROOT = Path(__file__).resolve().parents[2]


def rules(text: str):
    return parse_rules(textwrap.dedent(text), "test.yaml")


def message(name: str):
    return parsed_message(fixture(name))


def text_message(content: str):
    xml = fixture("messages/text.xml").decode().replace("微博", content)
    return parsed_message(xml)


def test_the_shipped_replies_file_is_valid_and_covers_the_required_cases() -> None:
    shipped = load_rules(ROOT / "replies.yaml")
    weibo = shipped.find_reply(message("messages/text.xml"))
    assert weibo.reply.kind == "news" and len(weibo.reply.value) == 1
    assert shipped.find_reply(message("events/subscribe.xml")).reply.kind == "text"
    assert shipped.find_reply(message("events/click.xml")).rule == "menu['V1001_TODAY']"
    assert shipped.find_reply(message("events/subscribe_qrscene.xml")).rule == "scenes['1001']"
    assert shipped.find_reply(message("events/scan.xml")).rule == "scenes['poster_2026']"
    assert shipped.find_reply(message("messages/text_unmatched.xml")).rule == "default"
    assert shipped.find_reply(message("messages/voice.xml")).rule == "messages.voice"
    assert shipped.find_reply(message("messages/voice_unrecognized.xml")).rule == "messages.voice_unrecognized"
    for kind in ("image", "video", "shortvideo", "link", "location"):
        assert shipped.find_reply(message(f"messages/{kind}.xml")).reply is not None, kind


def test_first_rule_in_file_order_wins_with_no_hidden_priority() -> None:
    ruleset = rules(
        """
        keywords:
          - contains: 天气
            reply: contains-rule
          - match: 今天天气
            reply: exact-rule
          - regex: '^今天'
            reply: regex-rule
        """
    )
    assert ruleset.match_text("今天天气").rule == "keywords[0]:contains:天气"
    assert ruleset.match_text("今天好").rule == "keywords[2]:regex:^今天"
    assert ruleset.match_text("明天").rule == "default"


def test_an_exact_rule_written_first_beats_a_later_substring_rule() -> None:
    ruleset = rules(
        """
        keywords:
          - match: 微博
            reply: exact
          - contains: 微
            reply: contains
        """
    )
    assert ruleset.match_text(" 微博 ").rule == "keywords[0]:match:微博"
    assert ruleset.match_text("微信").rule == "keywords[1]:contains:微"


def test_matching_ignores_case_unless_asked_not_to() -> None:
    ruleset = rules(
        """
        keywords:
          - match: Help
            reply: help
          - contains: SECRET
            case_sensitive: true
            reply: secret
          - regex: '^hi\\b'
            reply: hi
        """
    )
    assert ruleset.match_text("HELP").rule.startswith("keywords[0]")
    assert ruleset.match_text("a secret").rule == "default"
    assert ruleset.match_text("a SECRET").rule.startswith("keywords[1]")
    assert ruleset.match_text("Hi there").rule.startswith("keywords[2]")


def test_a_list_of_keywords_shares_one_reply() -> None:
    ruleset = rules("keywords:\n  - match: [帮助, help]\n    reply: 帮助文本\n")
    assert ruleset.match_text("help").rule == ruleset.match_text("帮助").rule


def test_ten_thousand_exact_keywords_are_a_lookup() -> None:
    lines = ["keywords:"] + [f"  - match: kw{i}\n    reply: r{i}" for i in range(10_000)]
    ruleset = parse_rules("\n".join(lines))
    assert len(ruleset.exact) == 10_000 and not ruleset.scanned
    assert ruleset.match_text("kw9999").rule == "keywords[9999]:match:kw9999"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("keywords:\n  - match: a\n    reply:\n      news: [{title: 1, url: u}, {title: 2, url: u}]\n",
         "test.yaml line 4 (keywords[0] match 'a'): news has 2 articles but WeChat shows only 1"),
        ("events:\n  subscribe:\n    news: [" + ", ".join(["{title: t, url: u}"] * 9) + "]\n",
         "news has 9 articles but WeChat shows only 8 in an event reply"),
        ("keywords:\n  - match: a\n    reply: hello {name}\n", "unknown placeholder {name}"),
        ("keywords:\n  - match: a\n    reply: '{content.__class__}'\n", "unknown placeholder"),
        ("keywords:\n  - match: a\n    reply: 'unbalanced {'\n", "bad braces"),
        ("keywords:\n  - regex: '('\n    reply: x\n", "bad regex"),
        ("keywords:\n  - match: a\n    contains: b\n    reply: x\n", "exactly one of match/contains/regex"),
        ("keywords:\n  - match: a\n", "exactly one of match/contains/regex, and reply"),
        ("keywords:\n  - match: a\n    reply: {txt: x}\n", "a reply needs exactly one of"),
        ("keywords:\n  - match: a\n    reply:\n      news: [{title: t, url: u, pic_url: p}]\n",
         "unknown article keys ['pic_url']"),
        ("keywords:\n  - match: a\n    reply:\n      news: [{description: d}]\n", "needs at least a title and a url"),
        ("keywords:\n  - match: a\n    reply: {handler: 'no_such_module:f'}\n", "cannot be imported"),
        ("keywords:\n  - match: a\n    reply: {video: {title: t}}\n", "missing ['media_id']"),
        ("events:\n  subscrbe: hi\n", "unknown events kind"),
        ("keyword:\n  - match: a\n", "unknown sections ['keyword']"),
        ("keywords: [\n", "not valid YAML"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_invalid_files_are_reported_with_the_line_and_the_rule(text: str, expected: str) -> None:
    with pytest.raises(RulesError) as error:
        parse_rules(text, "test.yaml")
    assert expected in str(error.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RulesError) as error:
        parse_rules("keywords:\n  - match: a\n    reply: '{x}'\n  - regex: '('\n    reply: y\n", "f.yaml")
    assert len(str(error.value).splitlines()) == 2


def test_reply_is_found_for_every_fixture_message_and_event() -> None:
    shipped = load_rules(ROOT / "replies.yaml")
    for path in sorted((ROOT / "tests/fixtures/messages").glob("*.xml")) + sorted(
        (ROOT / "tests/fixtures/events").glob("*.xml")
    ):
        match = shipped.find_reply(parsed_message(path.read_bytes()))
        assert match.rule, path.name


def test_unknown_click_key_and_unknown_event_say_nothing() -> None:
    shipped = load_rules(ROOT / "replies.yaml")
    unknown_click = fixture("events/click.xml").decode().replace("V1001_TODAY", "NO_SUCH_KEY")
    assert shipped.find_reply(parsed_message(unknown_click)).reply is None
    assert shipped.find_reply(message("events/unknown.xml")).reply is None
    assert shipped.find_reply(message("events/unsubscribe.xml")).reply is None


def test_hot_reload_picks_up_changes_and_keeps_the_last_good_rules(tmp_path: Path) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text("keywords:\n  - match: a\n    reply: first\n")
    now = [0.0]
    book = LiveRules(path, check_interval=1.0, clock=lambda: now[0])
    assert book.current().match_text("a").reply.value.text == "first"

    path.write_text("keywords:\n  - match: a\n    reply: second version\n")
    assert book.current().match_text("a").reply.value.text == "first"  # not checked again yet
    now[0] = 1.5
    assert book.current().match_text("a").reply.value.text == "second version"

    path.write_text("keywords:\n  - regex: '('\n    reply: broken\n")
    now[0] = 3.0
    assert book.current().match_text("a").reply.value.text == "second version"


def test_an_invalid_file_at_start_up_is_fatal(tmp_path: Path) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text("keywords:\n  - regex: '('\n    reply: broken\n")
    with pytest.raises(RulesError):
        LiveRules(path)
    with pytest.raises(RulesError, match="no such file"):
        LiveRules(tmp_path / "missing.yaml")


def test_check_command_validates_without_starting_anything(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "replies", "check", "replies.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert good.returncode == 0 and "OK" in good.stdout
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("keywords:\n  - match: a\n    reply:\n      news: [{title: 1, url: u}, {title: 2, url: u}]\n")
    bad = subprocess.run(
        [sys.executable, "-m", "replies", "check", str(bad_file)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1
    assert "line 4" in bad.stderr and "keywords[0]" in bad.stderr


def test_a_background_reload_keeps_serving_the_old_rules_until_the_new_ones_are_ready(tmp_path: Path) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text("keywords:\n  - match: a\n    reply: first\n")
    now = [0.0]
    book = LiveRules(path, check_interval=1.0, clock=lambda: now[0], background=True)
    lines = ["keywords:"] + [f"  - match: kw{i}\n    reply: r{i}" for i in range(3000)] + [
        "  - match: a\n    reply: second version"
    ]
    path.write_text("\n".join(lines))
    now[0] = 1.5
    assert book.current().match_text("a").reply.value.text == "first"  # answered at once, from the old rules
    assert book.reloading is not None
    book.reloading.join(timeout=30)
    assert book.current().match_text("a").reply.value.text == "second version"


def test_errors_found_by_the_fast_loader_still_name_their_line() -> None:
    with pytest.raises(RulesError, match=r"line 4 \(keywords\[1\] match 'b'\): unknown placeholder"):
        parse_rules("keywords:\n  - match: a\n    reply: ok\n  - match: b\n    reply: '{nope}'\n", "test.yaml")


def test_a_handler_under_its_old_name_still_loads_works_and_warns_once_with_its_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text(
        "keywords:\n"
        "  - match: hello\n"
        "    reply: hi\n"
        "  - regex: '^978'\n"
        '    reply: {handler: "books:lookup"}\n',
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="replies"):
        ruleset = load_rules(path)

    handler = ruleset.match_text("9787111547420").reply.value
    assert handler is handlers.books.lookup
    assert handler_path(handler) == "handlers.books:lookup"
    # A wrong check digit is answered without asking the book source.
    wrong_digit = "9787111547420"
    expected = handlers.books.checksum_text(handlers.books.parse_isbn(wrong_digit))
    assert handler(text_message(wrong_digit).wechat) == expected
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        f"{path} line 5: handler 'books:lookup' is now 'handlers.books:lookup'; the old name still works"
    ]


def test_the_new_handler_names_load_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="replies"):
        load_rules(ROOT / "replies.yaml")
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("old_name", ["weixin.oauth.replies:profile_link", "oauth.replies:profile_link"])
def test_the_profile_link_handler_under_an_old_module_name_still_loads_and_warns(
    old_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "replies.yaml"
    path.write_text(f'keywords:\n  - match: 我的资料\n    reply: {{handler: "{old_name}"}}\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="replies"):
        ruleset = load_rules(path)
    assert ruleset.match_text("我的资料").reply.value is weixin.oauth.profile_link.profile_link
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        f"{path} line 3: handler '{old_name}' is now 'weixin.oauth.profile_link:profile_link'; the old name still works"
    ]
