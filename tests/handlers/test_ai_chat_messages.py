"""The AI chat handler's pure parts: the question, the history kept and sent, the messages, the texts."""

from __future__ import annotations

import pytest

from handlers.ai_chat import (
    BUSY_TEXT,
    FAILURE_TEXTS,
    MAX_STORED_ANSWER_CHARS,
    MAX_STORED_QUESTION_CHARS,
    Turn,
    chat_messages,
    failure_text,
    question_of,
    recent_turns,
    stored_turn,
)


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("问 今天适合做什么？", "今天适合做什么？"),
        ("  问：什么是 ISBN", "什么是 ISBN"),
        ("问:hello", "hello"),
        ("问题是什么", "问题是什么"),  # no space or colon after 问: the whole text is the question
        ("  为什么天是蓝的  ", "为什么天是蓝的"),
        ("问", "问"),
    ],
)
def test_the_question_is_the_text_without_the_rules_prefix(text: str, question: str) -> None:
    assert question_of(text) == question


def test_a_stored_turn_caps_each_side() -> None:
    turn = stored_turn("问" * 500, "答" * 5000)
    assert len(turn["q"]) == MAX_STORED_QUESTION_CHARS and turn["q"].endswith("…")
    assert len(turn["a"]) == MAX_STORED_ANSWER_CHARS and turn["a"].endswith("…")
    assert stored_turn(" 短 ", "也短") == {"q": "短", "a": "也短"}


def history(count: int, size: int = 10) -> list[dict[str, str]]:
    return [{"q": f"q{index}".ljust(size, "."), "a": f"a{index}".ljust(size, ".")} for index in range(count)]


def test_the_history_sent_is_the_last_n_turns_in_order() -> None:
    turns = recent_turns(history(8), max_turns=3)
    assert [turn.question[:2] for turn in turns] == ["q5", "q6", "q7"]
    assert recent_turns(history(2), max_turns=5) == [Turn("q0".ljust(10, "."), "a0".ljust(10, ".")),
                                                     Turn("q1".ljust(10, "."), "a1".ljust(10, "."))]
    assert recent_turns(history(4), max_turns=0) == []


def test_the_history_sent_drops_the_oldest_turns_beyond_the_size_cap() -> None:
    turns = recent_turns(history(5, size=100), max_turns=5, max_chars=450)  # 200 characters a turn
    assert [turn.question[:2] for turn in turns] == ["q3", "q4"]
    assert recent_turns(history(1, size=300), max_turns=5, max_chars=450) == []


@pytest.mark.parametrize("stored", [None, "text", {"q": "a"}, 42])
def test_a_history_that_is_not_a_list_counts_as_none(stored: object) -> None:
    assert recent_turns(stored, max_turns=5) == []


def test_malformed_history_items_are_skipped() -> None:
    stored = [{"q": "one", "a": "1"}, "junk", {"q": "two"}, {"q": 3, "a": "x"}, None, {"q": "four", "a": "4"}]
    assert recent_turns(stored, max_turns=5) == [Turn("one", "1"), Turn("four", "4")]


def test_the_messages_are_the_system_prompt_the_history_and_the_question() -> None:
    messages = chat_messages("你是助手。", [Turn("一", "1"), Turn("二", "2")], "三")
    assert messages == [
        {"role": "system", "content": "你是助手。"},
        {"role": "user", "content": "一"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "二"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "三"},
    ]
    assert chat_messages("  ", [], "只有问题") == [{"role": "user", "content": "只有问题"}]


def test_every_failure_has_a_polite_chinese_text() -> None:
    for kind, text in FAILURE_TEXTS.items():
        assert text.startswith("抱歉"), kind
    assert failure_text("something new") == BUSY_TEXT


def test_the_rules_checker_refuses_the_chat_handler_inline() -> None:
    from weixin.rules import RulesError
    from weixin.rules.checker import parse_rules

    parse_rules('default: {handler: "handlers.ai_chat:chat", background: true}\n')
    with pytest.raises(RulesError, match=r"handler 'handlers.ai_chat:chat' is slow: use it with background: true"):
        parse_rules('default: {handler: "handlers.ai_chat:chat"}\n')
    parse_rules('keywords: [{match: 新对话, reply: {handler: "handlers.ai_chat:reset"}}]\n')
