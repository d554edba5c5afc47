"""weixin/long_text.py: a long text as pages that each fit one WeChat text message."""

from __future__ import annotations

import pytest

from weixin.long_text import TEXT_LIMIT_BYTES, pages_with_hint, split_text, utf8_length


def test_a_text_that_fits_is_one_page_and_an_empty_one_none() -> None:
    assert split_text("短文本", 2048) == ["短文本"]
    assert split_text("", 2048) == []
    assert split_text("x" * 2048, 2048) == ["x" * 2048]


@pytest.mark.parametrize("text", [
    "汉字" * 3000,  # 3 bytes a character: a cut at the byte limit would halve one
    "a😀" * 1500,  # 4-byte characters between 1-byte ones
    "第一段。" * 400 + "\n\n" + "second paragraph. " * 300,
    "x" * 10000,  # no break at all
])
def test_pages_fit_keep_the_order_and_join_back_to_the_text(text: str) -> None:
    pages = split_text(text, TEXT_LIMIT_BYTES)
    assert len(pages) > 1
    assert "".join(pages) == text
    assert all(0 < utf8_length(page) <= TEXT_LIMIT_BYTES for page in pages)


def test_a_page_ends_at_a_line_or_sentence_when_one_is_near_the_limit() -> None:
    lines = [f"第{n}行：" + "内容" * 20 for n in range(100)]
    pages = split_text("\n".join(lines), 500)
    assert all(page.endswith("\n") for page in pages[:-1])
    sentences = "这是一句话。" * 200
    assert all(page.endswith("。") for page in split_text(sentences, 301))


def test_a_tiny_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 3)


def test_pages_to_read_one_by_one_end_with_the_hint_except_the_last() -> None:
    text = "\n".join(f"line {n} " + "字" * 50 for n in range(200))
    pages = pages_with_hint(text, "回复「更多」继续", 1000)
    assert len(pages) > 2
    assert all(page.endswith("\n回复「更多」继续") for page in pages[:-1])
    assert not pages[-1].endswith("继续")
    assert all(utf8_length(page) <= 1000 for page in pages)
    assert "".join(page.removesuffix("\n回复「更多」继续") for page in pages) == text
    assert pages_with_hint("short", "回复「更多」继续") == ["short"]
