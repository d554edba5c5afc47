"""Keyword regexes cannot be made slow by a follower's text (issue 13, item 1).

Rules run on RE2 (linear-time matching): every text WeChat can deliver is routed within the issue's 50 ms bound,
the shipped ISBN rule and an operator's nested-quantifier rule included; a pattern that needs backtracking
(lookaround, backreferences) is refused at load with its line; the usual Python meanings of \\d, \\s, \\w and
`$` are kept, so rules written for Python's `re` still match the same texts.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handle
from handlers.books import parse_isbn
from tests.wechat_requests import fixture
from utils import xml_fields
from weixin.rules import RulesError, load_rules, parse_rules

ROOT = Path(__file__).resolve().parents[2]

# The bound for routing one text in process.
ROUTING_BOUND_SECONDS = 0.050
# WeChat documents text messages up to 2048 bytes, but the server accepts bodies up to MAX_BODY_BYTES (64 KiB):
# the content can be nearly that long once the XML around it is counted.
MAX_CONTENT_BYTES = 60_000

# The ISBN rule as shipped before issue 13 (Python `re`, case-insensitive): the reference for what the rewritten
# rule must still match.
OLD_ISBN_PATTERN = re.compile(r"^\s*(isbn(-1[03])?\s*[:：]?\s*)?((\d[\s-]*){9}[\dx]|(\d[\s-]*){12}\d)\s*$", re.I)


def filled(unit: str, tail: str = "", head: str = "") -> str:
    """`head` + `unit` repeated + `tail`, as long as fits in MAX_CONTENT_BYTES of UTF-8."""
    room = MAX_CONTENT_BYTES - len((head + tail).encode())
    return head + unit * (room // len(unit.encode())) + tail


HOSTILE_TEXTS = {
    "isbn, 20,000 spaces, a": "isbn" + " " * 20_000 + "a",
    "isbn, spaces to 60 KB, a": filled(" ", "a", head="isbn"),
    "isbn, full-width spaces, a": filled("\u3000", "a", head="isbn"),
    "isbn, spaces, colon, spaces, a": "isbn" + " " * 29_000 + "：" + " " * 29_000 + "a",
    "isbn-13, tabs and no-break spaces, x": filled("\t\xa0", "x", head="ISBN-13"),
    "'1 ' repeated, a": filled("1 ", "a"),
    "'1 ' repeated": filled("1 "),
    "'1-' repeated, x!": filled("1-", "x!"),
    "13 digits, spaces, a": filled(" ", "a", head="9780140328721"),
    "full-width digits and spaces": filled("１２３\u3000", "a"),
    "spaces, a": filled(" ", "a"),
    "newlines, a": filled("\n", "a"),
    "'a' repeated, b": filled("a", "b"),
    "'a' repeated": filled("a"),
    "words and spaces, !": filled("ab ", "!"),
    "Chinese text": filled("你好世界，今天天气怎么样？"),
    "hi, then letters": filled("i", head="h"),
}

# What an operator could write, copied from regex tutorials: each one backtracks exponentially (or as a high power
# of the length) in Python's `re` on some text of the corpus.
NESTED_QUANTIFIER_PATTERNS = [
    r"(a+)+$", r"(a|aa)*b", r"^(\w+\s?)*$", r"^(\s*isbn\s*)*$", r"^(\d+[\s-]?)+$", r"(.*a){12}",
]


def text_message(content: str):
    """A text message parsed as handle.py parses it before RuleSet.find_reply (the content is not stripped)."""
    xml = fixture("messages/text.xml").decode().replace("微博", content).encode()
    message = handle.parse_message(xml_fields(xml))
    assert message.wechat.content == content
    return message


def best_of_three(route) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        route()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.fixture(scope="module")
def shipped():
    return load_rules(ROOT / "replies.yaml")


def one_regex_rule(pattern: str):
    return parse_rules(f"keywords:\n  - regex: '{pattern}'\n    reply: operator's rule\n", "operator.yaml")


def test_the_hostile_corpus_fits_the_body_limit() -> None:
    assert all(len(text.encode()) <= MAX_CONTENT_BYTES for text in HOSTILE_TEXTS.values())
    assert max(len(text.encode()) for text in HOSTILE_TEXTS.values()) > MAX_CONTENT_BYTES - 10


# Before RE2 these took seconds (quadratic) or never finished (exponential): the timeout ends such a run.
@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", HOSTILE_TEXTS)
def test_the_shipped_rules_route_any_text_within_the_bound(shipped, name: str) -> None:
    message = text_message(HOSTILE_TEXTS[name])
    assert best_of_three(lambda: shipped.find_reply(message)) < ROUTING_BOUND_SECONDS


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", HOSTILE_TEXTS)
@pytest.mark.parametrize("pattern", NESTED_QUANTIFIER_PATTERNS)
def test_an_operators_nested_quantifier_rule_routes_any_text_within_the_bound(pattern: str, name: str) -> None:
    rules, message = one_regex_rule(pattern), text_message(HOSTILE_TEXTS[name])
    assert best_of_three(lambda: rules.find_reply(message)) < ROUTING_BOUND_SECONDS


@pytest.mark.parametrize("pattern", NESTED_QUANTIFIER_PATTERNS)
@pytest.mark.parametrize("text", ["xaa", "aab", "今天 天气", "978-7 111", " isbn isbn", "a" * 12, "!?", ""])
def test_nested_quantifier_rules_still_match_what_python_matched(pattern: str, text: str) -> None:
    rules = one_regex_rule(pattern)
    assert (rules.match_text(text).rule != "default") is bool(re.search(pattern, text, re.IGNORECASE))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", HOSTILE_TEXTS)
def test_the_isbn_check_of_the_book_handler_is_quick_on_any_text(name: str) -> None:
    text = HOSTILE_TEXTS[name]
    assert best_of_three(lambda: parse_isbn(text)) < ROUTING_BOUND_SECONDS


# --- the shipped ISBN rule matches what it matched ---------------------------------------------


def isbn_rule(rules):
    [rule] = [rule for rule in rules.keywords if rule.reply and rule.reply.kind == "handler"
              and getattr(rule.reply.value, "__name__", "") == "lookup"]
    return rule


# RE2 makes any pattern linear; the shipped one is also written so that Python's backtracking `re` reads a text once
# (two `\s*` side by side around an optional colon made the old one quadratic).
@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", HOSTILE_TEXTS)
def test_the_shipped_isbn_pattern_is_linear_even_on_a_backtracking_engine(shipped, name: str) -> None:
    backtracking = re.compile(isbn_rule(shipped).patterns[0], re.IGNORECASE)
    text = HOSTILE_TEXTS[name]
    assert best_of_three(lambda: backtracking.search(text)) < ROUTING_BOUND_SECONDS


@pytest.mark.parametrize(
    "text",
    [
        "9780140328721", "978-0-14-032872-1", "978 0 14 032872 1", "0140328726", "0-14-032872-6",
        "ISBN 0-8044-2957-X", "isbn-13：978-7-111-54742-6", "  ISBN: 711154742x ", "isbn-10 0140328726",
        "ISBN９７８７１１１５４７４２６", "978\u30007\u3000111\u300054742\u30006", "ISBN：\u3000978-7-111-54742-6\n",
        "9780140328722", "0804429571", "1234567890123", "9780140328721\n",
    ],
)
def test_the_shipped_isbn_rule_matches_every_form_the_book_tests_use(shipped, text: str) -> None:
    assert OLD_ISBN_PATTERN.search(text)
    assert shipped.match_text(text).rule == isbn_rule(shipped).label


@pytest.mark.parametrize(
    "text",
    ["12345", "hello", "isbn", "978-7-111-54742", "ISBN 978 7 111 54742 6 7", "978--", "x123456789",
     "isbn 97801403287211"],
)
def test_the_shipped_isbn_rule_leaves_other_texts_alone(shipped, text: str) -> None:
    assert not OLD_ISBN_PATTERN.search(text)
    assert shipped.match_text(text).rule != isbn_rule(shipped).label


ISBN_PIECES = st.sampled_from([
    "isbn", "ISBN", "IsBn", "-13", "-10", "-1", ":", "：", " ", "\u3000", "\xa0", "\t", "\n", "\x0b", "\x1c", "\x85",
    "-", "--", "0", "1", "7", "8", "9", "97", "978", "979", "x", "X", "a", "９", "٣", "0140328726", "9780140328721",
])


@settings(max_examples=3000, deadline=None)
@given(st.lists(ISBN_PIECES, max_size=24).map("".join))
def test_the_shipped_isbn_rule_agrees_with_the_old_one_on_generated_texts(shipped, text: str) -> None:
    rule = isbn_rule(shipped)
    assert rule.matches(text, text.casefold()) == bool(OLD_ISBN_PATTERN.search(text)), repr(text)


# --- Python's meanings are kept ----------------------------------------------------------------


def assigned_bmp_characters() -> list[str]:
    # Characters unassigned in Python's Unicode tables may be assigned in RE2's newer ones; surrogates are not text.
    return [chr(code) for code in range(0x10000)
            if not 0xD800 <= code <= 0xDFFF and unicodedata.category(chr(code)) != "Cn"]


@pytest.mark.parametrize("pattern", [r"^\d$", r"^\D$", r"^\s$", r"^\S$", r"^\w$", r"^\W$", r"^[\w-]$",
                                     r"^[\W_]$", r"^[^\d\s]$", r"^[\D]$"])
def test_shorthand_classes_keep_their_unicode_meaning(pattern: str) -> None:
    rules = parse_rules(f"keywords:\n  - regex: '{pattern}'\n    case_sensitive: true\n    reply: hit\n")
    python = re.compile(pattern)
    differing = [text for text in assigned_bmp_characters()
                 if (rules.match_text(text).rule != "default") != bool(python.search(text))]
    assert differing == []


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^帮助$", "帮助\n", True),  # Python's `$` also matches before a final newline
        ("^帮助$", "帮助\n\n", False),
        (r"^帮助\Z", "帮助\n", False),
        (r"^\u5e2e\U000052a9$", "帮助", True),
        (r"^\N{EM DASH}{,2}$", "——", True),
        (r"^a{,2}$", "aaa", False),
        (r"^\p{Han}+$", "你好", True),  # RE2's own syntax is welcome too
        (r"^[$]$", "$", True),
        (r"^\$\d$", "$9", True),
        (r"^[]a]+$", "]a", True),
        (r"^[[:alpha:]]$", "a]", True),  # Python reads `[` in a class as itself, not as a POSIX class
        (r"^(?P<word>[a-z]+)!$", "Wow!", True),
        (r"^[\W_]+$", "_，！", True),
        (r"\\d", "\\d", True),
    ],
)
@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # Python's own warning for [[
def test_rules_written_for_python_match_the_same_texts(pattern: str, text: str, matches: bool) -> None:
    rules = parse_rules(f"keywords:\n  - regex: '{pattern}'\n    reply: hit\n")
    assert (rules.match_text(text).rule != "default") is matches
    if r"\p" not in pattern:
        assert bool(re.search(pattern, text, re.IGNORECASE)) is matches


def test_case_is_ignored_unless_the_rule_says_case_sensitive() -> None:
    rules = rules_from(
        r"""
        keywords:
          - regex: '^Code-\d+$'
            case_sensitive: true
            reply: exact case
          - regex: '^code-\d+$'
            reply: any case
          - regex: '(?i)^strasse$'
            case_sensitive: true
            reply: inline flag
        """
    )
    assert rules.match_text("Code-12").rule == r"keywords[0]:regex:^Code-\d+$"
    assert rules.match_text("CODE-12").rule == r"keywords[1]:regex:^code-\d+$"
    assert rules.match_text("STRASSE").rule == "keywords[2]:regex:(?i)^strasse$"


def rules_from(text: str):
    return parse_rules(textwrap.dedent(text), "test.yaml")


# --- refused at load, with the line -----------------------------------------------------------

REFUSED = textwrap.dedent(
    r"""
    keywords:
      - match: 你好
        reply: hi
      - regex: '^(?=.*isbn)\d+'
        reply: lookahead
      - regex: '(\w)\1'
        reply: backreference
      - regex: ['^ok$', '(?<!x)y']
        reply: lookbehind in a list
      - regex: '(?P<word>a)(?P=word)'
        reply: named backreference
    """
)


def test_patterns_that_need_backtracking_are_refused_at_load_with_their_line() -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(REFUSED, "operator.yaml")
    lines = str(refused.value).splitlines()
    assert len(lines) == 4, lines
    for line, (number, position, pattern) in zip(
        lines, [(5, 1, r"^(?=.*isbn)\d+"), (7, 2, r"(\w)\1"), (9, 3, "(?<!x)y"), (11, 4, "(?P<word>a)(?P=word)")],
        strict=True,
    ):
        assert line.startswith(f"operator.yaml line {number} (keywords[{position}]): ")
        assert repr(pattern) in line and "RE2" in line


def test_a_pattern_no_engine_accepts_is_still_a_bad_regex() -> None:
    with pytest.raises(RulesError, match=r"test.yaml line 2 \(keywords\[0\]\): bad regex '\(': missing \)"):
        parse_rules("keywords:\n  - regex: '('\n    reply: x\n", "test.yaml")


def test_a_negated_shorthand_in_a_negated_class_is_refused_rather_than_changed() -> None:
    with pytest.raises(RulesError, match=r"test.yaml line 2 \(keywords\[0\]\): bad regex .*inside \[\^\.\.\.\]"):
        parse_rules("keywords:\n  - regex: '[^\\S]'\n    reply: x\n", "test.yaml")


def test_the_check_command_reports_refused_patterns_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "refused.yaml"
    path.write_text(REFUSED)
    checked = subprocess.run(
        [sys.executable, "-m", "replies", "check", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 1
    lines = checked.stderr.splitlines()
    assert len(lines) == 4, checked.stderr  # and nothing else (RE2 logs its own parse errors unless told not to)
    assert lines[0].startswith(f"{path} line 5 (keywords[1]): ")
