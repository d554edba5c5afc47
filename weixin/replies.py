"""The replies file: load and validate it, find the reply for a message, and reload it when it changes.

`python -m replies check FILE` validates a file without starting anything.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
import string
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from weixin.rule_regex import PatternError, RulePattern, compile_rule_pattern

log = logging.getLogger("replies")

# Events are replies to a push, not to a follower's message: WeChat shows up to 8 articles for them.
MAX_ARTICLES_FOR_MESSAGE = 1
MAX_ARTICLES_FOR_EVENT = 8

MESSAGE_KINDS = ("text", "image", "voice", "voice_unrecognized", "video", "shortvideo", "location", "link", "unknown")
EVENT_KINDS = (
    "subscribe", "unsubscribe", "scan", "location", "click", "view",
    "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album", "pic_weixin",
    "location_select", "templatesendjobfinish", "masssendjobfinish", "unknown",
)
# Handler modules under their names before the move to handlers/ and weixin/ (issue 14): an old replies file
# still loads, with one warning per use naming the new spelling.
OLD_HANDLER_MODULES = {"books": "handlers.books", "oauth.replies": "weixin.oauth.replies"}
REPLY_KINDS = ("text", "news", "image", "voice", "video", "music", "echo", "handler")
ARTICLE_KEYS = {"title", "description", "picurl", "url"}
VIDEO_KEYS = {"media_id", "title", "description"}
MUSIC_KEYS = {"title", "description", "music_url", "hq_music_url", "thumb_media_id"}
TOP_LEVEL_KEYS = {"keywords", "default", "messages", "events", "menu", "scenes"}

# What a text template may mention: values taken from the message, nothing else (no attribute access).
PLACEHOLDERS = frozenset({
    "content", "openid", "account", "msg_type", "event", "event_key", "scene", "recognition",
    "label", "latitude", "longitude", "scale", "precision", "title", "description", "url",
    "scan_result", "scan_type", "pic_count", "media_id", "format",
})


class RulesError(ValueError):
    """The replies file is invalid; the message names the file, the line and the rule."""


class _LineDict(dict):
    line: int = 0


class _LineLoader(yaml.SafeLoader):
    """A safe YAML loader whose mappings remember their line, for error messages that point somewhere."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    mapping = _LineDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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

    def find_reply(self, message: Any) -> Match:
        """The reply for a parsed wechatpy message or event (pure: no I/O)."""
        category, kind = describe(message)
        if category == "message":
            if kind == "text":
                return self.match_text(str(message.content or ""))
            if kind == "voice":
                if (message.recognition or "").strip():
                    return Match(self.messages.get("voice"), "messages.voice")
                return Match(self.messages.get("voice_unrecognized"), "messages.voice_unrecognized")
            if kind not in MESSAGE_KINDS:
                kind = "unknown"
            return Match(self.messages.get(kind), f"messages.{kind}")
        if kind in ("subscribe_scan", "scan"):
            scene = str(message.scene_id or "")
            if scene in self.scenes:
                return Match(self.scenes[scene], f"scenes[{scene!r}]")
            fallback = "subscribe" if kind == "subscribe_scan" else "scan"
            return Match(self.events.get(fallback), f"events.{fallback}")
        if kind == "subscribe_scan_product":
            kind = "subscribe"
        if kind == "click":
            key = str(message.key or "")
            if key in self.menu:
                return Match(self.menu[key], f"menu[{key!r}]")
            return Match(self.events.get("click"), "events.click (no menu rule)")
        if kind not in EVENT_KINDS:
            kind = "unknown"
        return Match(self.events.get(kind), f"events.{kind}")


def current_handler_name(path: str) -> str:
    """`module:function` with a module's old name (OLD_HANDLER_MODULES) replaced by its new one."""
    module_name, colon, function_name = path.partition(":")
    return f"{OLD_HANDLER_MODULES.get(module_name, module_name)}{colon}{function_name}"


def handler_path(function: Any) -> str | None:
    """`module:function` that imports back to `function` (how a worker process finds it), else None."""
    module_name, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    try:
        found = getattr(importlib.import_module(module_name), name) if module_name and "." not in name else None
    except (ImportError, AttributeError):
        return None
    return f"{module_name}:{name}" if found is function else None


def describe(message: Any) -> tuple[str, str]:
    """("message", "text") or ("event", "subscribe"...), lower-cased as wechatpy dispatches them."""
    message_type = str(getattr(message, "type", "unknown") or "unknown").lower()
    if message_type == "event":
        return "event", str(message.event or "unknown").lower()
    raw = getattr(message, "_data", {}) or {}
    if message_type == "unknown" and str(raw.get("MsgType", "")).lower() == "event":
        return "event", str(raw.get("Event") or "unknown").lower()
    if message_type == "unknown":
        return "message", str(raw.get("MsgType") or "unknown").lower()
    return "message", message_type


# ---------------------------------------------------------------------------------------------
# Loading and validation


class _Checker:
    """Turns the YAML document into a RuleSet, collecting errors with their line and rule."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, where: str, line: int | None, problem: str) -> None:
        at = f" line {line}" if line else ""
        self.errors.append(f"{self.path}{at} ({where}): {problem}")

    def template(self, where: str, line: int | None, text: Any) -> Template | None:
        if not isinstance(text, str | int | float):
            self.error(where, line, f"expected text, got {type(text).__name__}")
            return None
        text = str(text)
        names: set[str] = set()
        try:
            for _literal, name, spec, conversion in string.Formatter().parse(text):
                if name is None:
                    continue
                if name not in PLACEHOLDERS or spec or conversion:
                    self.error(
                        where, line,
                        f"unknown placeholder {{{name}}}; use one of {', '.join(sorted(PLACEHOLDERS))} "
                        "(write {{ and }} for literal braces)",
                    )
                    return None
                names.add(name)
        except ValueError as error:
            self.error(where, line, f"bad braces in text ({error}); write {{{{ and }}}} for literal braces")
            return None
        return Template(text, frozenset(names))

    def reply(self, where: str, line: int | None, raw: Any, max_articles: int) -> Reply | None:
        if raw is None:
            return None
        if isinstance(raw, str | int | float):
            template = self.template(where, line, raw)
            return Reply("text", template) if template else None
        if not isinstance(raw, dict):
            self.error(where, line, "a reply is text, a mapping such as {text: ...}/{news: [...]}, or null")
            return None
        line = getattr(raw, "line", line)
        kinds = [key for key in raw if key in REPLY_KINDS]
        unknown = [key for key in raw if key not in REPLY_KINDS and key != "background"]
        if unknown or len(kinds) != 1:
            got = ", ".join(map(str, raw))
            self.error(where, line, f"a reply needs exactly one of {', '.join(REPLY_KINDS)}; got {got}")
            return None
        kind = kinds[0]
        value = raw[kind]
        if "background" in raw and kind != "handler":
            self.error(where, line, "background applies to handler replies only: {handler: ..., background: true}")
            return None
        if kind == "text":
            template = self.template(where, line, value)
            return Reply("text", template) if template else None
        if kind == "echo":
            if value is not True:
                self.error(where, line, "echo takes `true`")
                return None
            return Reply("echo")
        if kind in ("image", "voice"):
            if not isinstance(value, str) or not value.strip():
                self.error(where, line, f"{kind} takes the media_id of uploaded material")
                return None
            return Reply(kind, value.strip())
        if kind == "video":
            return self._fields_reply(where, line, kind, value, VIDEO_KEYS, required={"media_id"})
        if kind == "music":
            return self._fields_reply(where, line, kind, value, MUSIC_KEYS, required={"thumb_media_id"})
        if kind == "handler":
            return self._handler(where, line, value, raw.get("background", False))
        return self._news(where, line, value, max_articles)

    def _fields_reply(
        self, where: str, line: int | None, kind: str, value: Any, allowed: set[str], required: set[str]
    ) -> Reply | None:
        if not isinstance(value, dict):
            self.error(where, line, f"{kind} takes a mapping with {', '.join(sorted(allowed))}")
            return None
        extra = set(value) - allowed
        missing = required - set(value)
        if extra or missing:
            problem = f"unknown keys {sorted(extra)}" if extra else f"missing {sorted(missing)}"
            self.error(where, line, f"{kind}: {problem} (allowed: {', '.join(sorted(allowed))})")
            return None
        fields = {}
        for key, text in value.items():
            template = self.template(where, line, text if text is not None else "")
            if template is None:
                return None
            fields[key] = template
        return Reply(kind, fields)

    def _news(self, where: str, line: int | None, value: Any, max_articles: int) -> Reply | None:
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value:
            self.error(where, line, "news takes a list of articles (title, description, picurl, url)")
            return None
        if len(value) > max_articles:
            context = "a reply to a follower's message" if max_articles == 1 else "an event reply"
            self.error(
                where, line,
                f"news has {len(value)} articles but WeChat shows only {max_articles} in {context}; "
                f"keep {max_articles}",
            )
            return None
        articles = []
        for article in value:
            article_line = getattr(article, "line", line)
            if not isinstance(article, dict):
                self.error(where, article_line, "an article is a mapping with title, description, picurl, url")
                return None
            extra = set(article) - ARTICLE_KEYS
            if extra:
                self.error(
                    where, article_line,
                    f"unknown article keys {sorted(extra)} (allowed: description, picurl, title, url)",
                )
                return None
            if not article.get("title") or not article.get("url"):
                self.error(where, article_line, "an article needs at least a title and a url")
                return None
            fields = {}
            for key in sorted(ARTICLE_KEYS):
                template = self.template(where, article_line, article.get(key) or "")
                if template is None:
                    return None
                fields[key] = template
            articles.append(fields)
        return Reply("news", tuple(articles))

    def _handler(self, where: str, line: int | None, value: Any, background: Any) -> Reply | None:
        if not isinstance(value, str) or ":" not in value:
            self.error(where, line, "handler takes 'module:function'")
            return None
        if not isinstance(background, bool):
            self.error(where, line, "background takes true or false")
            return None
        if current_handler_name(value) != value:
            at = f" line {line}" if line else ""
            self.warnings.append(f"{self.path}{at}: handler {value!r} is now '{current_handler_name(value)}'; "
                                 "the old name still works")
        module_name, _, function_name = current_handler_name(value).partition(":")
        try:
            function = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as error:
            self.error(where, line, f"handler {value!r} cannot be imported: {error}")
            return None
        if not callable(function):
            self.error(where, line, f"handler {value!r} is not callable")
            return None
        if background and handler_path(function) is None:
            self.error(where, line, f"background handler {value!r} must be a module-level function (the worker "
                                    "imports it by its own module and name)")
            return None
        return Reply("handler", function, background=background)

    def keyword_rule(self, position: int, raw: Any) -> KeywordRule | None:
        where = f"keywords[{position}]"
        line = getattr(raw, "line", None)
        if not isinstance(raw, dict):
            self.error(where, line, "a keyword rule is a mapping: {match|contains|regex: ..., reply: ...}")
            return None
        hows = [key for key in ("match", "contains", "regex") if key in raw]
        extra = set(raw) - {"match", "contains", "regex", "reply", "case_sensitive"}
        if len(hows) != 1 or extra or "reply" not in raw:
            self.error(
                where, line,
                "a keyword rule needs exactly one of match/contains/regex, and reply"
                + (f" (unknown keys: {sorted(map(str, extra))})" if extra else ""),
            )
            return None
        how = hows[0]
        case_sensitive = bool(raw.get("case_sensitive", False))
        patterns_raw = raw[how] if isinstance(raw[how], list) else [raw[how]]
        if not patterns_raw or not all(isinstance(p, str | int | float) and str(p).strip() for p in patterns_raw):
            self.error(where, line, f"{how} needs non-empty text (or a list of texts)")
            return None
        patterns = tuple(str(p) if how == "regex" else str(p).strip() for p in patterns_raw)
        regexes: tuple[RulePattern, ...] = ()
        if how == "regex":
            try:
                regexes = tuple(compile_rule_pattern(pattern, case_sensitive) for pattern in patterns)
            except PatternError as error:
                self.error(where, line, str(error))
                return None
        elif not case_sensitive:
            patterns = tuple(pattern.casefold() for pattern in patterns)
        reply = self.reply(f"{where} {how} {patterns[0]!r}", line, raw["reply"], MAX_ARTICLES_FOR_MESSAGE)
        if raw["reply"] is not None and reply is None:
            return None
        return KeywordRule(position, how, patterns, reply, case_sensitive, regexes)

    def section(self, document: dict, name: str, allowed: Iterable[str] | None, max_articles: int) -> dict:
        raw = document.get(name) or {}
        line = getattr(document, "line", None)
        if not isinstance(raw, dict):
            self.error(name, line, f"{name} is a mapping of name -> reply")
            return {}
        line = getattr(raw, "line", line)
        result: dict[str, Reply | None] = {}
        for key, value in raw.items():
            key = str(key)
            if allowed is not None and key not in allowed:
                self.error(f"{name}.{key}", line, f"unknown {name} kind; known: {', '.join(allowed)}")
                continue
            result[key] = self.reply(f"{name}.{key}", line, value, max_articles)
        return result


# libyaml's parser reads a large file several times faster than the pure-Python one that records lines.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_rules(text: str, path: str = "replies.yaml") -> RuleSet:
    """A RuleSet from YAML text; raises RulesError listing every problem found.

    A valid file is read once with the fast loader; a file with problems, or naming a handler by its old
    name, is read again with the loader that records lines, so that every error and warning names its line."""
    try:
        rules, warnings = _build_rules(_load_document(text, path, _FAST_LOADER), path)
    except RulesError:
        warnings = None
    if warnings is None or warnings:
        rules, warnings = _build_rules(_load_document(text, path, _LineLoader), path)
    for warning in warnings:
        log.warning("%s", warning)
    return rules


def _load_document(text: str, path: str, loader: type) -> dict:
    try:
        document = yaml.load(text, Loader=loader)  # both are safe loaders
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise RulesError(f"{path}{at}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if document is None:
        document = _LineDict()
    if not isinstance(document, dict):
        raise RulesError(f"{path}: the file must be a mapping with keywords/default/messages/events/menu/scenes")
    return document


def _build_rules(document: dict, path: str) -> tuple[RuleSet, list[str]]:
    checker = _Checker(path)
    unknown = set(document) - TOP_LEVEL_KEYS
    if unknown:
        checker.error("top level", getattr(document, "line", None), f"unknown sections {sorted(map(str, unknown))}")
    rules = RuleSet()
    keywords = document.get("keywords") or []
    if not isinstance(keywords, list):
        checker.error("keywords", None, "keywords is a list of rules")
        keywords = []
    for position, raw in enumerate(keywords):
        rule = checker.keyword_rule(position, raw)
        if rule is None:
            continue
        rules.keywords.append(rule)
    # Positions must index rules.keywords even when a broken rule was dropped (the load fails anyway).
    rules.keywords = [
        KeywordRule(index, r.how, r.patterns, r.reply, r.case_sensitive, r.regexes)
        for index, r in enumerate(rules.keywords)
    ]
    for rule in rules.keywords:
        if rule.how == "match":
            table = rules.exact_case_sensitive if rule.case_sensitive else rules.exact
            for pattern in rule.patterns:
                table.setdefault(pattern, rule.position)
        else:
            rules.scanned.append(rule)
    rules.default = checker.reply("default", getattr(document, "line", None), document.get("default"), 1)
    rules.messages = checker.section(document, "messages", MESSAGE_KINDS, MAX_ARTICLES_FOR_MESSAGE)
    rules.events = checker.section(document, "events", EVENT_KINDS, MAX_ARTICLES_FOR_EVENT)
    rules.menu = checker.section(document, "menu", None, MAX_ARTICLES_FOR_EVENT)
    rules.scenes = checker.section(document, "scenes", None, MAX_ARTICLES_FOR_EVENT)
    if checker.errors:
        raise RulesError("\n".join(checker.errors))
    return rules, checker.warnings


def load_rules(path: Path | str) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: no such file (set REPLIES_FILE)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(f"{path}: cannot be read: {error}") from None
    return parse_rules(text, str(path))


# A request looks at the replies file (one stat) at most this often: an edit reaches a busy worker within
# this much plus the time the file takes to load, and an idle worker on its first request.
CHECK_INTERVAL_SECONDS = 0.5
# How long the request that notices an edit waits for the new rules (the server's setting; handle.py). A usual
# file loads in milliseconds, so that request already answers from the new rules; a file of thousands of rules
# (a second or more) finishes loading in the background while requests answer from the old rules, so that no
# request waits long enough to matter to WeChat's 5 s or to uWSGI's harakiri.
RELOAD_WAIT_SECONDS = 1.0
# A file's times are only as fine as its filesystem's clock (a second or two on some): an edit of the same size
# within that time of the last read could leave the stat unchanged. While the file read last is this recent, each
# check compares its bytes too.
RECENT_EDIT_NS = 2_000_000_000


@dataclass(frozen=True)
class _FileVersion:
    """The replies file as last read: what stat said before the read, a digest of the bytes, and whether it was
    modified so recently that the stat alone cannot tell a later edit."""

    stat: tuple[int, int, int, int] | None  # see _stat_signature; None when the file was missing
    digest: bytes | None  # None when it could not be read
    recent: bool


def _stat_signature(path: Path) -> tuple[tuple[int, int, int, int] | None, bool]:
    """(st_mtime_ns, st_ctime_ns, st_size, st_ino) of the file, or None; and whether it changed in the last few
    seconds. The inode changes when a new file is renamed over it; ctime when it is written in place, even by a
    tool that puts back an older mtime (cp -p)."""
    now_ns = time.time_ns()
    try:
        stat = os.stat(path)
    except OSError:
        return None, False
    changed_ns = max(stat.st_mtime_ns, stat.st_ctime_ns)
    return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino), now_ns - changed_ns < RECENT_EDIT_NS


class ReplyBook:
    """One process's current rules, reloaded when the file changes; an invalid edit keeps the last good rules
    (the error is logged with its line numbers).

    Every process checks for itself: uWSGI forks its workers from the master, which loaded the file at
    start-up, so a worker, a respawned one too, has only the rules it loads itself; and no thread of the master
    survives the fork.
    - `current()` (every request) stats the file at most every `check_interval` s. When it changed, the file is
      loaded again; with `background` the load runs in a thread and the request waits for it up to `reload_wait`
      s (see RELOAD_WAIT_SECONDS), so the first request an idle worker takes after an edit answers from the new
      rules. Without `background` the load runs in the request (tests, scripts).
    - `after_fork()` (uWSGI's postfork hook, index.py) loads the file in a new worker before its first request
      when it changed since the master read it.
    """

    def __init__(
        self,
        path: Path | str,
        check_interval: float = CHECK_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
        reload_wait: float = 0.0,
    ):
        self.path = Path(path)
        self.check_interval = check_interval
        self.clock = clock
        self.background = background
        self.reload_wait = reload_wait
        self.reloading: threading.Thread | None = None
        self._lock = threading.Lock()
        self._read_last: _FileVersion | None = None
        data = self._read_if_changed(at_start_up=True)
        assert data is not None
        self.rules = self._parse(data)  # at start-up an invalid file is fatal
        self._next_check = clock() + check_interval

    def current(self) -> RuleSet:
        now = self.clock()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return self.rules
        started: threading.Thread | None = None
        try:
            self._next_check = now + self.check_interval
            # While an earlier edit is still loading, it is not read again: the next check after it sees the rest.
            if not (self.reloading and self.reloading.is_alive()):
                data = self._read_if_changed()
                if data is not None and self.background:
                    started = threading.Thread(target=self._reload, args=(data,), name="replies-reload", daemon=True)
                    self.reloading = started
                    started.start()
                elif data is not None:
                    self._reload(data)
        finally:
            self._lock.release()
        if started is not None and self.reload_wait > 0:
            started.join(self.reload_wait)
        return self.rules

    def after_fork(self) -> None:
        """In a newly forked worker: load the file now if it changed since the master read it, before the worker
        takes a request. A lock or a reload thread of the master's is meaningless here; start afresh."""
        self._lock = threading.Lock()
        self.reloading = None
        data = self._read_if_changed()
        if data is not None:
            self._reload(data)
        self._next_check = self.clock() + self.check_interval

    def _read_if_changed(self, at_start_up: bool = False) -> bytes | None:
        """The file's bytes when they may differ from those read last, else None: a stat, and a read only after
        an edit (or while the last one is recent). The stat comes first, so an edit during the read shows up
        at the next check. At start-up a missing or unreadable file raises RulesError; later it is logged once
        and the rules stay."""
        signature, recent = _stat_signature(self.path)
        last = self._read_last
        if last is not None and signature == last.stat and not last.recent:
            return None
        try:
            data = self.path.read_bytes()
        except OSError as error:
            problem = (
                RulesError(f"{self.path}: no such file (set REPLIES_FILE)") if isinstance(error, FileNotFoundError)
                else RulesError(f"{self.path}: cannot be read: {error}")
            )
            if at_start_up:
                raise problem from None
            if last is None or last.digest is not None or signature != last.stat:
                log.error("replies file cannot be read; keeping the last good rules:\n%s", problem)
            self._read_last = _FileVersion(signature, None, recent)
            return None
        digest = hashlib.blake2b(data, digest_size=16).digest()
        self._read_last = _FileVersion(signature, digest, recent)
        if last is not None and digest == last.digest:
            return None  # touched, or renamed over with the same content
        return data

    def _parse(self, data: bytes) -> RuleSet:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RulesError(f"{self.path}: cannot be read: {error}") from None
        return parse_rules(text, str(self.path))

    def _reload(self, data: bytes) -> None:
        try:
            self.rules = self._parse(data)
        except RulesError as error:
            log.error("replies file changed but is invalid; keeping the last good rules:\n%s", error)
            return
        log.info("replies file reloaded: %s (%d keyword rules)", self.path, len(self.rules.keywords))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "check":
        print("usage: python -m replies check FILE", file=sys.stderr)
        return 2
    try:
        rules = load_rules(args[1])
    except RulesError as error:
        print(error, file=sys.stderr)
        return 1
    print(
        f"{args[1]}: OK — {len(rules.keywords)} keyword rules, {len(rules.menu)} menu keys, "
        f"{len(rules.scenes)} QR scenes, default: {rules.default.kind if rules.default else 'nothing'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
