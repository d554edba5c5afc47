"""The replies file checked and turned into a RuleSet: every problem with its line and rule, article limits,
placeholders, handlers that import, regexes that RE2 runs."""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from weixin.rules.handler_names import current_handler_name, handler_path, resolve_handler
from weixin.rules.loader import read_document
from weixin.rules.model import (
    EVENT_KINDS,
    MAX_ARTICLES_FOR_EVENT,
    MAX_ARTICLES_FOR_MESSAGE,
    MESSAGE_KINDS,
    PLACEHOLDERS,
    REPLY_KINDS,
    KeywordRule,
    Reply,
    RulesError,
    RuleSet,
    Template,
)
from weixin.rules.regex import PatternError, RulePattern, compile_rule_pattern

log = logging.getLogger("replies")

ARTICLE_KEYS = {"title", "description", "picurl", "url"}
VIDEO_KEYS = {"media_id", "title", "description"}
MUSIC_KEYS = {"title", "description", "music_url", "hq_music_url", "thumb_media_id"}
TOP_LEVEL_KEYS = {"keywords", "default", "messages", "events", "menu", "scenes"}


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
        try:
            function = resolve_handler(value)
        except (ImportError, AttributeError) as error:
            self.error(where, line, f"handler {value!r} cannot be imported: {error}")
            return None
        if not callable(function):
            self.error(where, line, f"handler {value!r} is not callable")
            return None
        if not background and getattr(function, "background_only", False):
            # It can take longer than WeChat waits (a chat model): inline, uWSGI's harakiri would cut it.
            self.error(where, line, f"handler {value!r} is slow: use it with background: true")
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



def parse_rules(text: str, path: str = "replies.yaml") -> RuleSet:
    """A RuleSet from YAML text; raises RulesError listing every problem found.

    A valid file is read once with the fast loader; a file with problems, or naming a handler by its old
    name, is read again with the loader that records lines, so that every error and warning names its line."""
    try:
        rules, warnings = _build_rules(read_document(text, path), path)
    except RulesError:
        warnings = None
    if warnings is None or warnings:
        rules, warnings = _build_rules(read_document(text, path, with_lines=True), path)
    for warning in warnings:
        log.warning("%s", warning)
    return rules


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
    checked = (checker.keyword_rule(position, raw) for position, raw in enumerate(keywords))
    rules.set_keywords([rule for rule in checked if rule is not None])
    rules.default = checker.reply("default", getattr(document, "line", None), document.get("default"), 1)
    rules.messages = checker.section(document, "messages", MESSAGE_KINDS, MAX_ARTICLES_FOR_MESSAGE)
    rules.events = checker.section(document, "events", EVENT_KINDS, MAX_ARTICLES_FOR_EVENT)
    rules.menu = checker.section(document, "menu", None, MAX_ARTICLES_FOR_EVENT)
    rules.scenes = checker.section(document, "scenes", None, MAX_ARTICLES_FOR_EVENT)
    if checker.errors:
        raise RulesError("\n".join(checker.errors))
    return rules, checker.warnings


def load_rules(path: Path | str) -> RuleSet:
    """The rules of the replies file at `path`; raises RulesError listing every problem found."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise unreadable(path, error) from None
    return rules_from_bytes(data, path)


def rules_from_bytes(data: bytes, path: Path) -> RuleSet:
    """The rules of a replies file's bytes (UTF-8), as read from `path`; raises RulesError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise unreadable(path, error) from None
    return parse_rules(text, str(path))


def unreadable(path: Path, error: OSError | UnicodeDecodeError) -> RulesError:
    """The error for a replies file that cannot be read (the operator's first guess: REPLIES_FILE)."""
    if isinstance(error, FileNotFoundError):
        return RulesError(f"{path}: no such file (set REPLIES_FILE)")
    return RulesError(f"{path}: cannot be read: {error}")
