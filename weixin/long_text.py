"""Split a long text into pages that each fit one WeChat text message.

The figure: a text message's `content` is limited to 2048 bytes of UTF-8. custom/send refuses a longer one
with 45002 "content size out of limit", and a passive reply is cut by the client; WeChat's reference page
(https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html) gives no
figure, its developer community gives 2048
(https://developers.weixin.qq.com/community/develop/doc/00084e2936c340b9015a753405b800).
"""

from __future__ import annotations

TEXT_LIMIT_BYTES = 2048
# Where a page prefers to end, best first: a paragraph, a line, a sentence (Chinese or Latin), a clause, a space.
BREAKS = ("\n\n", "\n", "。", "！", "？", "!", "?", ". ", "；", ";", "，", ",", " ")
# A break is only taken when it keeps at least this share of the page: otherwise a page would be tiny.
MIN_FILL = 0.5


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


def _longest_prefix(text: str, limit_bytes: int) -> int:
    """The number of characters of `text` whose UTF-8 fits in `limit_bytes` (never half a character)."""
    encoded = text.encode("utf-8")[:limit_bytes]
    return len(encoded.decode("utf-8", errors="ignore"))


def split_text(text: str, limit_bytes: int = TEXT_LIMIT_BYTES) -> list[str]:
    """`text` as ordered pages of at most `limit_bytes` UTF-8 bytes each, cut at a paragraph, line, sentence,
    clause or space when one lies in the second half of a page, else at a character boundary. Joining the
    pages gives `text` back. A text that fits is one page; an empty text is no page."""
    if limit_bytes < 4:  # one character of UTF-8 takes up to 4 bytes
        raise ValueError("limit_bytes must be at least 4")
    pages: list[str] = []
    rest = text
    while rest:
        if utf8_length(rest) <= limit_bytes:
            pages.append(rest)
            break
        end = _longest_prefix(rest, limit_bytes)
        cut = end
        for mark in BREAKS:
            found = rest.rfind(mark, 0, end - len(mark) + 1)
            if found >= 0 and found + len(mark) >= MIN_FILL * end:
                cut = found + len(mark)
                break
        pages.append(rest[:cut])
        rest = rest[cut:]
    return pages


def pages_with_hint(text: str, hint: str, limit_bytes: int = TEXT_LIMIT_BYTES) -> list[str]:
    """`text` as pages to read one at a time: every page but the last ends with `hint` on a line of its own
    (how to get the next one), and each, hint included, fits `limit_bytes`."""
    if utf8_length(text) <= limit_bytes:
        return [text] if text else []
    suffix = "\n" + hint
    pages = split_text(text, limit_bytes - utf8_length(suffix))
    return [page + suffix for page in pages[:-1]] + pages[-1:]
