"""Edges of the XML policy, the field parser, the timestamp window and xml_safe_text that the mutation
run (`make mutate`, docs/testing.md) found unpinned: each test names the behaviour, pure functions only."""

from __future__ import annotations

import time

import pytest

import utils


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<xml><a>1</a></xml>\x00", "NUL byte in body"),
        (b"<xml><a>\x00</a></xml>", "NUL byte in body"),
        (b'<?xml version="1.0" encoding="UTF-16"?><xml><a>1</a></xml>', "only a UTF-8 XML declaration is accepted"),
        (b"<XML><a>1</a></XML>", "body must be UTF-8 XML starting with <xml>"),
        (b"\x0b<xml><a>1</a></xml>", "body must be UTF-8 XML starting with <xml>"),
        (b"\x0c<xml><a>1</a></xml>", "body must be UTF-8 XML starting with <xml>"),
        (b'<?xml version="1.0"?>\x0b<xml><a>1</a></xml>', "body must be UTF-8 XML starting with <xml>"),
    ],
)
def test_the_xml_policy_refuses_with_the_reason_the_sender_sees(body: bytes, reason: str) -> None:
    # The reason is the body of the 400 answer (handle.py), so its wording is part of the behaviour.
    assert utils.xml_policy_problem(body) == reason


@pytest.mark.parametrize(
    "body",
    [b"<xml><a>1</a></xml>", b" \t\r\n<xml><a>1</a></xml>", b'<?xml version="1.0"?> \n<xml><a>1</a></xml>'],
)
def test_the_xml_policy_allows_only_xml_blanks_before_the_root(body: bytes) -> None:
    assert utils.xml_policy_problem(body) is None


def nested(levels: int) -> bytes:
    """A document `levels` elements deep, counting <xml> as the first."""
    inner = b"leaf"
    for index in range(levels - 1, 0, -1):
        inner = b"<e%d>%s</e%d>" % (index, inner, index)
    return b"<xml>" + inner + b"</xml>"


def test_fields_nest_up_to_max_xml_depth_and_no_deeper() -> None:
    value = utils.xml_fields(nested(utils.MAX_XML_DEPTH))
    for index in range(1, utils.MAX_XML_DEPTH - 1):
        value = value[f"e{index}"]
    assert value == {f"e{utils.MAX_XML_DEPTH - 1}": "leaf"}
    with pytest.raises(utils.MalformedXml, match=r"^XML nested deeper than any WeChat message$"):
        utils.xml_fields(nested(utils.MAX_XML_DEPTH + 1))


def test_repeated_tags_become_a_list_of_every_value_in_order() -> None:
    two = utils.xml_fields(b"<xml><item>a</item><item>b</item></xml>")
    three = utils.xml_fields(b"<xml><list><item>a</item><item>b</item><item>c</item></list></xml>")
    assert two == {"item": ["a", "b"]}
    assert three == {"list": {"item": ["a", "b", "c"]}}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<xml></xml>", "root element must be <xml> with fields"),
        (b"<other><a>1</a></other>", "root element must be <xml> with fields"),
        (b"<xml><a>1</a>", "body is not well-formed XML (or not UTF-8)"),
    ],
)
def test_malformed_documents_are_refused_with_a_reason_safe_to_show(body: bytes, reason: str) -> None:
    with pytest.raises(utils.MalformedXml) as refused:
        utils.xml_fields(body)
    assert str(refused.value) == reason


def test_a_window_of_one_second_is_enforced_not_switched_off() -> None:
    assert utils.timestamp_is_fresh("1000", 1, now=1001.0)
    assert not utils.timestamp_is_fresh("1000", 1, now=1002.0)


def test_the_window_defaults_to_the_current_time() -> None:
    assert utils.timestamp_is_fresh(str(int(time.time())), 300)
    assert not utils.timestamp_is_fresh(str(int(time.time()) - 3600), 300)


def test_xml_safe_text_turns_any_value_into_its_text() -> None:
    assert utils.xml_safe_text(42) == "42"
    assert utils.xml_safe_text(None) == "None"
