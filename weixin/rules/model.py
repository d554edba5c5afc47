"""The rules of the replies file as data, and matching: which reply a message gets (pure: no I/O)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from weixin.messages import Message
from weixin.rules.regex import RulePattern

# Events are replies to a push, not to a follower's message: WeChat shows up to 8 articles for them.
MAX_ARTICLES_FOR_MESSAGE = 1
MAX_ARTICLES_FOR_EVENT = 8

MESSAGE_KINDS = ("text", "image", "voice", "voice_unrecognized", "video", "shortvideo", "location", "link", "unknown")
EVENT_KINDS = (
    "subscribe", "unsubscribe", "scan", "location", "click", "view",
    "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin",
    "location_select", "templatesendjobfinish", "masssendjobfinish", "unknown",
)
REPLY_KINDS = ("text", "news", "image", "voice", "video", "music", "echo", "handler")

# What a text template may mention: values taken from the message, nothing else (no attribute access).
PLACEHOLDERS = frozenset({
    "content", "openid", "account", "msg_type", "event", "event_key", "scene", "recognition",
    "label", "latitude", "longitude", "scale", "precision", "title", "description", "url",
    "scan_result", "scan_type", "pic_count", "media_id", "format",
})


class RulesError(ValueError):
    """The replies file is invalid; the message names the file, the line and the rule."""


@dataclass(frozen=True)
class Template:
    """A text with `{placeholders}` checked at load time; `fields` is empty for plain text."""

    text: str
    fields: frozenset[str] = frozenset()

    def render(self, values: dict[str, str]) -> str:
        if not self.fields:
            return self.text.replace("{{", "{").replace("}}", "}")
        return self.text.format_map(values)


@dataclass(frozen=True)
class Reply:
    """What to answer: `kind` is one of REPLY_KINDS, `value` its checked content."""

    kind: str
    value: Any = None
    # A handler that may be slow: it runs in the worker (slow_replies), its answer is passive if ready by the
    # deadline, else a customer-service message.
    background: bool = False
    # The rendered XML of a reply without placeholders, filled in by weixin/render.py on first use.
    rendered: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def is_static(self) -> bool:
        """True when no text in the reply depends on the message (so it can be rendered once)."""
        if self.kind in ("handler", "echo"):
            return False
        if isinstance(self.value, Template):
            return not self.value.fields
        if isinstance(self.value, dict):
            return all(not template.fields for template in self.value.values())
        if isinstance(self.value, tuple):
            return all(not template.fields for article in self.value for template in article.values())
        return True


@dataclass(frozen=True)
class KeywordRule:
    position: int
    how: str  # match, contains or regex
    patterns: tuple[str, ...]
    reply: Reply | None
    case_sensitive: bool = False
    regexes: tuple[RulePattern, ...] = ()  # on RE2: linear in the text, whatever the pattern

    @property
    def label(self) -> str:
        return f"keywords[{self.position}]:{self.how}:{self.patterns[0]}"

    def matches(self, text: str, folded: str) -> bool:
        if self.how == "contains":
            haystack = text if self.case_sensitive else folded
            return any(pattern in haystack for pattern in self.patterns)
        if self.how == "regex":
            return any(regex.search(text) for regex in self.regexes)
        subject = text.strip() if self.case_sensitive else folded.strip()
        return subject in self.patterns


@dataclass(frozen=True)
class Match:
    """The reply found for a message and the rule that gave it (for the request log)."""

    reply: Reply | None
    rule: str


@dataclass
class RuleSet:
    """The rules of one replies file, by section (checker.py builds it; `find_reply` reads it)."""

    keywords: list[KeywordRule] = field(default_factory=list)
    default: Reply | None = None
    messages: dict[str, Reply | None] = field(default_factory=dict)
    events: dict[str, Reply | None] = field(default_factory=dict)
    menu: dict[str, Reply | None] = field(default_factory=dict)
    scenes: dict[str, Reply | None] = field(default_factory=dict)
    # Exact keywords live in a dict so that 10,000 of them cost one lookup, not a scan.
    exact: dict[str, int] = field(default_factory=dict)
    exact_case_sensitive: dict[str, int] = field(default_factory=dict)
    scanned: list[KeywordRule] = field(default_factory=list)

    def set_keywords(self, rules: list[KeywordRule]) -> None:
        """The keyword rules in file order, and the tables `match_text` looks them up in."""
        # Positions must index self.keywords even when a broken rule was dropped (the load fails anyway).
        self.keywords = [
            KeywordRule(index, r.how, r.patterns, r.reply, r.case_sensitive, r.regexes) for index, r in enumerate(rules)
        ]
        self.exact, self.exact_case_sensitive, self.scanned = {}, {}, []
        for rule in self.keywords:
            if rule.how == "match":
                table = self.exact_case_sensitive if rule.case_sensitive else self.exact
                for pattern in rule.patterns:
                    table.setdefault(pattern, rule.position)
            else:
                self.scanned.append(rule)

    def match_text(self, text: str) -> Match:
        """The first keyword rule, in file order, that matches `text`; else the default reply."""
        folded = text.casefold()
        candidates = [
            position
            for position in (self.exact.get(folded.strip()), self.exact_case_sensitive.get(text.strip()))
            if position is not None
        ]
        first_exact = min(candidates) if candidates else len(self.keywords)
        for rule in self.scanned:
            if rule.position > first_exact:
                break
            if rule.matches(text, folded):
                return Match(rule.reply, rule.label)
        if first_exact < len(self.keywords):
            rule = self.keywords[first_exact]
            return Match(rule.reply, rule.label)
        return Match(self.default, "default")

    def find_reply(self, message: Message) -> Match:
        """The reply for a message or event (pure: no I/O)."""
        category, kind, wechat = message.category, message.kind, message.wechat
        if category == "message":
            if kind == "text":
                return self.match_text(str(wechat.content or ""))
            if kind == "voice":
                if (wechat.recognition or "").strip():
                    return Match(self.messages.get("voice"), "messages.voice")
                return Match(self.messages.get("voice_unrecognized"), "messages.voice_unrecognized")
            if kind not in MESSAGE_KINDS:
                kind = "unknown"
            return Match(self.messages.get(kind), f"messages.{kind}")
        if kind in ("subscribe_scan", "scan"):
            scene = str(wechat.scene_id or "")
            if scene in self.scenes:
                return Match(self.scenes[scene], f"scenes[{scene!r}]")
            fallback = "subscribe" if kind == "subscribe_scan" else "scan"
            return Match(self.events.get(fallback), f"events.{fallback}")
        if kind == "subscribe_scan_product":
            kind = "subscribe"
        if kind == "click":
            key = str(wechat.key or "")
            if key in self.menu:
                return Match(self.menu[key], f"menu[{key!r}]")
            return Match(self.events.get("click"), "events.click (no menu rule)")
        if kind not in EVENT_KINDS:
            kind = "unknown"
        return Match(self.events.get(kind), f"events.{kind}")

    def all_replies(self) -> list[Reply]:
        """Every reply of every section, in file order (rules that say nothing left out)."""
        replies = [rule.reply for rule in self.keywords] + [self.default]
        replies += [*self.messages.values(), *self.events.values(), *self.menu.values(), *self.scenes.values()]
        return [reply for reply in replies if reply is not None]

