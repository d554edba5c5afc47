"""Turn a reply from the rules (or a handler's plain return value) into WeChat reply XML.

Every string goes through `xml_safe_text`, so a follower's `]]>` or a control character in echoed text
cannot break the XML; placeholders inside URL fields are percent-encoded, so a follower's text can only
ever be one query value or path segment of a link; the reply classes are wechatpy's.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import redis
from wechatpy.messages import BaseMessage
from wechatpy.replies import (
    ArticlesReply,
    BaseReply,
    ImageReply,
    MusicReply,
    TextReply,
    VideoReply,
    VoiceReply,
)

from utils import xml_safe_text
from weixin.config import Settings
from weixin.messages import Message
from weixin.rules import MAX_ARTICLES_FOR_EVENT, MAX_ARTICLES_FOR_MESSAGE, Reply, Template
from weixin.sessions import Session, SessionStore, session_key

log = logging.getLogger("render")


# Reply fields that hold a link; text fields keep placeholders as the follower wrote them.
URL_FIELDS = frozenset({"url", "picurl", "music_url", "hq_music_url"})


class HandlerResultError(ValueError):
    """A handler returned something that is not a reply."""


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use besides the message: the process's settings and a Redis client for its own
    cache (weixin/redis_clients.py's `cache`). Built once per process by its entry point (the web App,
    the worker) and handed to a handler that takes a second argument: `def handler(message, context)`;
    `def handler(message)` is called with the message alone. `sessions` loads and saves the follower
    sessions (weixin/sessions.py) of a handler with a parameter named `session`."""

    settings: Settings
    redis: redis.Redis
    sessions: SessionStore | None = None
    # Clients a handler builds once per process and keeps here by name, not in a module global (the AI
    # handler's HTTP client: handlers/ai_chat.py). The worker lets a handler module's
    # `prepare_process(context)` fill it before it forks a process per job.
    clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class HandlerPlan:
    """What a handler's parameters ask for besides the message (its first parameter)."""

    context: str | None  # the parameter that gets the HandlerContext; "*" = positionally (*args, positional-only)
    session: bool  # a parameter named `session` (passed by keyword)


MESSAGE_ONLY = HandlerPlan(None, False)


def handler_plan(function: Callable[..., Any]) -> HandlerPlan:
    """Decided by the signature: a parameter named `session` gets the follower's session; the first other
    positional parameter after the message (or *args) gets the HandlerContext. A builtin without a
    signature gets the message alone."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return MESSAGE_ONLY
    session = any(p.name == "session" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters)
    context = None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    others = [p for p in positional[1:] if not (session and p.name == "session")]
    if others:
        context = "*" if others[0].kind is inspect.Parameter.POSITIONAL_ONLY else others[0].name
    elif any(p.kind is p.VAR_POSITIONAL for p in parameters):
        context = "*"
    return HandlerPlan(context, session)


def takes_context(function: Callable[..., Any]) -> bool:
    """True when `function` accepts the HandlerContext (see handler_plan)."""
    return handler_plan(function).context is not None


def call_handler(function: Callable[..., Any], message: BaseMessage, context: HandlerContext | None,
                 plan: HandlerPlan | None = None) -> Any:
    """The handler's plain return value. The context goes only to a handler that takes it, and only when
    there is one (a caller without a process context, a test say, calls it with the message alone); a
    handler with a `session` parameter gets the follower's session, loaded now and saved after it returns
    (without a context or with Redis down: an empty session whose writes are dropped, logged). `plan`:
    handler_plan(function), when the caller keeps it."""
    if plan is None:
        plan = handler_plan(function)
    if plan == MESSAGE_ONLY:
        return function(message)
    arguments: list[Any] = [message]
    keywords: dict[str, Any] = {}
    if plan.context is not None and context is not None:
        if plan.context == "*":
            arguments.append(context)
        else:
            keywords[plan.context] = context
    session = _load_session(message, context) if plan.session else None
    if session is not None:
        keywords["session"] = session
    value = function(*arguments, **keywords)
    if session is not None:  # a handler that raised leaves the session as it was
        _save_session(session, context)
    return value


def _load_session(message: BaseMessage, context: HandlerContext | None) -> Session:
    openid = str(getattr(message, "source", "") or "")
    account = str(getattr(message, "target", "") or "")
    if context is None or context.sessions is None:
        return Session(session_key(account, openid), available=False)
    return context.sessions.load(context.settings.appid or account, openid)


def _save_session(session: Session, context: HandlerContext | None) -> None:
    if context is None or context.sessions is None:
        if session.writes:
            log.warning("no session store here: dropping %d session write(s)", len(session.writes))
        return
    context.sessions.save(session)


def placeholder_values(message: Message) -> dict[str, str]:
    """The values a text template may use, from the raw fields of the message (missing ones are empty)."""
    raw = message.text
    scan_info = message.group("ScanCodeInfo")
    pics_info = message.group("SendPicsInfo")
    location_info = message.group("SendLocationInfo")
    category, kind = message.category, message.kind
    return {
        "content": raw("Content"),
        "openid": raw("FromUserName"),
        "account": raw("ToUserName"),
        "msg_type": kind if category == "message" else "event",
        "event": kind if category == "event" else "",
        "event_key": raw("EventKey"),
        "scene": str(getattr(message.wechat, "scene_id", "") or ""),
        "recognition": raw("Recognition"),
        "label": raw("Label") or str(location_info.get("Label") or ""),
        "latitude": raw("Location_X") or raw("Latitude") or str(location_info.get("Location_X") or ""),
        "longitude": raw("Location_Y") or raw("Longitude") or str(location_info.get("Location_Y") or ""),
        "scale": raw("Scale") or str(location_info.get("Scale") or ""),
        "precision": raw("Precision"),
        "title": raw("Title"),
        "description": raw("Description"),
        "url": raw("Url") or (raw("EventKey") if kind == "view" else ""),
        "scan_result": str(scan_info.get("ScanResult") or ""),
        "scan_type": str(scan_info.get("ScanType") or ""),
        "pic_count": str(pics_info.get("Count") or "0"),
        "media_id": raw("MediaId"),
        "format": raw("Format"),
    }


def _addressing(message: Message) -> dict[str, Any]:
    """The To/From swap: we answer the follower (FromUserName) from the account (ToUserName)."""
    return {
        "source": xml_safe_text(message.wechat.target or ""),
        "target": xml_safe_text(message.wechat.source or ""),
        "time": int(time.time()),
    }


def max_articles_for(message: Message) -> int:
    return MAX_ARTICLES_FOR_EVENT if message.category == "event" else MAX_ARTICLES_FOR_MESSAGE


# A reply without placeholders is rendered once with these stand-ins for the header, then each request
# only swaps them (NUL never survives xml_safe_text, so no operator text can contain them).
_SOURCE, _TARGET, _TIME = "\x00source\x00", "\x00target\x00", -987654321
_STATIC_HEAD = {"source": _SOURCE, "target": _TARGET, "time": _TIME}


def _as_written(template: Template) -> str:
    """A text without placeholders, as the rules file wrote it."""
    return xml_safe_text(template.render({}))


def render_reply(reply: Reply | None, message: Message, context: HandlerContext | None = None) -> str | None:
    """The reply XML, or None when there is nothing to say (the caller answers `success`). A handler
    reply's function gets `context` if it takes one (see HandlerContext)."""
    if reply is None:
        return None
    if reply.kind == "handler":
        if "plan" not in reply.rendered:  # inspected once per rule, not per message
            reply.rendered["plan"] = handler_plan(reply.value)
        value = call_handler(reply.value, message.wechat, context, reply.rendered["plan"])
        return render_reply(reply_from_value(value, message), message)
    if reply.kind == "echo":
        content = str(getattr(message.wechat, "content", "") or "")
        return TextReply(content=xml_safe_text(content), **_addressing(message)).render() if content else None
    if reply.is_static:
        if "xml" not in reply.rendered:
            reply.rendered["xml"] = _build(reply, _as_written, _as_written, _STATIC_HEAD)
        head = _addressing(message)
        return (
            reply.rendered["xml"]
            .replace(_SOURCE, head["source"], 1)
            .replace(_TARGET, head["target"], 1)
            .replace(f"<CreateTime>{_TIME}</CreateTime>", f"<CreateTime>{head['time']}</CreateTime>", 1)
        )
    values: dict[str, str] = {}

    def fill(template: Template) -> str:
        if template.fields and not values:
            values.update(placeholder_values(message))
        return xml_safe_text(template.render(values))

    def fill_url(template: Template) -> str:
        # safe="": a follower's `&`, `=`, `#`, `/` or `?` stays inside the one value the rule put it in.
        if not template.fields:
            return fill(template)
        if not values:
            values.update(placeholder_values(message))
        return xml_safe_text(template.render({name: quote(values[name], safe="") for name in template.fields}))

    return _build(reply, fill, fill_url, _addressing(message))


def _build(
    reply: Reply, fill: Callable[[Template], str], fill_url: Callable[[Template], str], head: dict[str, Any]
) -> str:
    """Render `reply` with wechatpy's reply classes, each text through `fill`, each URL through `fill_url`."""
    if reply.kind == "text":
        return TextReply(content=fill(reply.value), **head).render()
    if reply.kind == "image":
        return ImageReply(media_id=xml_safe_text(reply.value), **head).render()
    if reply.kind == "voice":
        return VoiceReply(media_id=xml_safe_text(reply.value), **head).render()
    if reply.kind == "video":
        return VideoReply(**{key: fill(value) for key, value in reply.value.items()}, **head).render()
    if reply.kind == "music":
        return MusicReply(
            **{key: (fill_url if key in URL_FIELDS else fill)(value) for key, value in reply.value.items()}, **head
        ).render()
    if reply.kind == "news":
        articles = [
            {
                "title": fill(article["title"]),
                "description": fill(article["description"]),
                "image": fill_url(article["picurl"]),
                "url": fill_url(article["url"]),
            }
            for article in reply.value
        ]
        return ArticlesReply(articles=articles, **head).render()
    raise ValueError(f"unknown reply kind {reply.kind!r}")


def reply_from_value(value: Any, message: Message) -> Reply | None:
    """A handler's plain return value as a Reply: None, text, a list of articles, or {kind: ...}."""
    if value is None or value == "":
        return None
    if isinstance(value, Reply):
        return value
    if isinstance(value, BaseReply):
        raise HandlerResultError("return plain values (text, articles, {kind: ...}), not wechatpy replies")
    if isinstance(value, str):
        return Reply("text", Template(value.replace("{", "{{").replace("}", "}}")))
    if isinstance(value, list):
        return _news_from_value(value, message)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, content),) = value.items()
        if kind == "text":
            return reply_from_value(str(content), message)
        if kind == "news":
            return _news_from_value(content if isinstance(content, list) else [content], message)
        if kind in ("image", "voice") and isinstance(content, str):
            return Reply(kind, content)
        if kind in ("video", "music") and isinstance(content, dict):
            return Reply(kind, {key: _literal(text) for key, text in content.items()})
    raise HandlerResultError(f"a handler returned {type(value).__name__}, which is not a reply")


def _literal(text: Any) -> Template:
    return Template(str(text or "").replace("{", "{{").replace("}", "}}"))


def _news_from_value(items: list, message: Message) -> Reply:
    limit = max_articles_for(message)
    if len(items) > limit:
        log.warning(
            "handler returned %d articles; WeChat shows %d here, sending the first %d", len(items), limit, limit
        )
        items = items[:limit]
    articles = []
    for item in items:
        if not isinstance(item, dict):
            raise HandlerResultError("an article is a dict with title, description, picurl, url")
        articles.append({
            "title": _literal(item.get("title")),
            "description": _literal(item.get("description")),
            "picurl": _literal(item.get("picurl") or item.get("image")),
            "url": _literal(item.get("url")),
        })
    if not articles:
        raise HandlerResultError("a handler returned an empty list of articles")
    return Reply("news", tuple(articles))
