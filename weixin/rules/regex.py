"""Keyword-rule regexes on RE2: matching time grows linearly with the text, whatever the pattern.

Python's `re` backtracks: a pattern such as `(a+)+$`, or two `\\s*` side by side, takes seconds to hours on a text of a
few kilobytes, and any follower can send one. RE2 never backtracks, so it refuses what needs backtracking
(lookahead/lookbehind, backreferences, atomic groups, possessive quantifiers); such a pattern is reported at load.

Rules were written for Python's `re`, so the pattern is first rewritten to keep Python's meanings where RE2's differ:
`\\d \\s \\w` (and their negations) are Unicode classes, not ASCII; `$` also matches before a final newline; `\\Z`,
`\\uXXXX`, `\\UXXXXXXXX`, `\\N{NAME}` and `{,n}` are spelled the RE2 way. What stays RE2's: `\\b` and `\\B` look at
ASCII letters and digits only (so `^hi\\b` matches "hi你好"), and RE2's own syntax (`\\p{Han}`) is accepted too.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any

import re2

# Python's \s is str.isspace(): RE2's \s (ASCII) plus the Unicode separators and four more controls.
_SPACE_CLASS_BODY = r"\s\p{Z}\x0b\x1c-\x1f\x85"
# Python's \d is the Unicode decimal digits (Nd); its \w is str.isalnum() or "_" (letters and numbers).
_WORD_CLASS_BODY = r"\p{L}\p{N}_"
# Shorthand -> what it means inside [...] (None: it is a negation, which RE2 cannot nest in a class).
_IN_CLASS = {"d": r"\p{Nd}", "D": r"\P{Nd}", "s": _SPACE_CLASS_BODY, "w": _WORD_CLASS_BODY, "S": None, "W": None}
_NEGATED = {"S": f"[^{_SPACE_CLASS_BODY}]", "W": f"[^{_WORD_CLASS_BODY}]"}
_OUTSIDE_CLASS = {
    "d": r"\p{Nd}", "D": r"\P{Nd}", "s": f"[{_SPACE_CLASS_BODY}]", "w": f"[{_WORD_CLASS_BODY}]", "Z": r"\z", **_NEGATED,
}
# Python's `$` (without the m flag) is the end of the text or the position before a final newline; with the m flag
# `\n?$` still matches exactly where `$` does.
_END = r"(?:\n?$)"
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_UPTO_REPEAT = re.compile(r"\{,(\d+)\}")


class PatternError(ValueError):
    """The pattern is refused; the message is one line that names the pattern and the reason."""


@dataclass(frozen=True)
class RulePattern:
    """A compiled keyword regex: `search(text)` is true when the pattern occurs anywhere in the text."""

    pattern: str
    compiled: Any  # re2._Regexp

    def search(self, text: str) -> bool:
        # Bytes skip the wrapper's offset bookkeeping; surrogatepass so that no text can make matching raise.
        return self.compiled.search(text.encode("utf-8", "surrogatepass")) is not None


def compile_rule_pattern(pattern: str, case_sensitive: bool) -> RulePattern:
    """`pattern` (written for Python's `re`) compiled on RE2; raises PatternError when RE2 cannot run it."""
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.never_capture = True  # rules only ask whether the text matches; groups would cost a second pass
    options.log_errors = False  # the error goes into the one-line report, not to stderr
    try:
        compiled = re2.compile(to_re2_syntax(pattern), options)
    except re2.error as error:
        detail = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) else error
        if _python_accepts(pattern):
            raise PatternError(
                f"bad regex {pattern!r}: RE2 refuses it ({detail}); keyword regexes run on RE2 so that no text can "
                "make matching slow, and RE2 has no lookahead/lookbehind, backreferences, atomic groups, possessive "
                "quantifiers or repeat counts over 1000"
            ) from None
        raise PatternError(f"bad regex {pattern!r}: {detail}") from None
    return RulePattern(pattern, compiled)


def _python_accepts(pattern: str) -> bool:
    """Whether Python's `re` compiles the pattern (only to word the error: `re` never matches a rule)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FutureWarnings about syntax are not the operator's problem here
            re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        return False
    return True


def to_re2_syntax(pattern: str) -> str:
    """The pattern with Python's meanings spelled in RE2 syntax (see the module's docstring)."""
    out: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            escape, position = _read_escape(pattern, position)
            out.append(_OUTSIDE_CLASS.get(escape[1:], _spelled_for_re2(escape)))
        elif char == "[":
            text, position = _read_class(pattern, position)
            out.append(text)
        elif char == "$":
            out.append(_END)
            position += 1
        elif char == "{" and (upto := _UPTO_REPEAT.match(pattern, position)):
            out.append(f"{{0,{upto.group(1)}}}")
            position = upto.end()
        else:
            out.append(char)
            position += 1
    return "".join(out)


def _read_escape(pattern: str, position: int) -> tuple[str, int]:
    """The escape starting at the backslash at `position` (`\\x{...}`, `\\p{...}`, `\\N{...}` whole), and its end."""
    if position + 1 >= len(pattern):
        return pattern[position:], len(pattern)  # a trailing backslash: RE2 reports it
    letter = pattern[position + 1]
    if letter in "pPxN" and pattern.startswith("{", position + 2):
        end = pattern.find("}", position + 2)
        if end != -1:
            return pattern[position:end + 1], end + 1
    if letter in "uU":
        digits = 4 if letter == "u" else 8
        hex_part = pattern[position + 2:position + 2 + digits]
        if len(hex_part) == digits and set(hex_part) <= _HEX_DIGITS:
            return pattern[position:position + 2 + digits], position + 2 + digits
    return pattern[position:position + 2], position + 2


def _spelled_for_re2(escape: str) -> str:
    """Python-only escapes of one character (`\\uXXXX`, `\\UXXXXXXXX`, `\\N{NAME}`) as RE2's `\\x{...}`."""
    if escape[1:2] in ("u", "U") and len(escape) in (6, 10):
        return f"\\x{{{escape[2:]}}}"
    if escape.startswith("\\N{"):
        try:
            return f"\\x{{{ord(unicodedata.lookup(escape[3:-1])):x}}}"
        except KeyError:
            return escape  # RE2 reports it
    return escape


def _read_class(pattern: str, position: int) -> tuple[str, int]:
    """The character class starting at `position`, rewritten, and the position after its `]`."""
    start = position
    position += 1
    negated = pattern.startswith("^", position)
    if negated:
        position += 1
    body: list[str] = []
    if pattern.startswith("]", position):  # a `]` first in the class is a literal one
        body.append("]")
        position += 1
    negations: list[str] = []
    while position < len(pattern) and pattern[position] != "]":
        if pattern[position] == "\\":
            escape, position = _read_escape(pattern, position)
            shorthand = escape[1:]
            if shorthand in _IN_CLASS:
                if _IN_CLASS[shorthand] is None:
                    negations.append(_NEGATED[shorthand])
                else:
                    body.append(_IN_CLASS[shorthand])
            else:
                body.append(_spelled_for_re2(escape))
        else:
            # Python reads `[` in a class as itself; RE2 would start a POSIX class such as [:alpha:].
            body.append("\\[" if pattern[position] == "[" else pattern[position])
            position += 1
    if position >= len(pattern):
        return pattern[start:], position  # no closing `]`: RE2 reports it
    position += 1
    if not negations:
        return f"[{'^' if negated else ''}{''.join(body)}]", position
    if negated:
        raise PatternError(
            f"bad regex {pattern!r}: \\S or \\W inside [^...] is not supported; write the class without them"
        )
    # [a\W] is "a, or a character that is not a word character": RE2 cannot nest [^...] in a class, so alternate.
    alternatives = ([f"[{''.join(body)}]"] if body else []) + negations
    return f"(?:{'|'.join(alternatives)})", position
