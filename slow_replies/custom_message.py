"""A reply (as render.reply_from_value makes it) as the JSON body of `/cgi-bin/message/custom/send`."""

from __future__ import annotations

import json
import logging
from typing import Any

from weixin.rules import Reply, Template

log = logging.getLogger("slow_replies")

MAX_CUSTOM_NEWS_ARTICLES = 1  # more than one answers 45008 since 2018-10-12


class NotSendable(ValueError):
    """A reply that has no customer-service form (an echo reply, say)."""


def _text(value: Any) -> str:
    return value.render({}) if isinstance(value, Template) else str(value or "")


def custom_message(openid: str, reply: Reply | None) -> dict[str, Any] | None:
    """The custom/send body for `reply` to `openid`; None when the reply is "say nothing"."""
    if reply is None:
        return None
    body: dict[str, Any] = {"touser": openid, "msgtype": reply.kind}
    if reply.kind == "text":
        body["text"] = {"content": _text(reply.value)}
    elif reply.kind == "news":
        articles = list(reply.value)
        if len(articles) > MAX_CUSTOM_NEWS_ARTICLES:
            log.warning("a customer-service message carries 1 article; sending the first of %d", len(articles))
        body["news"] = {
            "articles": [
                {
                    "title": _text(article["title"]),
                    "description": _text(article["description"]),
                    "url": _text(article["url"]),
                    "picurl": _text(article["picurl"]),
                }
                for article in articles[:MAX_CUSTOM_NEWS_ARTICLES]
            ]
        }
    elif reply.kind in ("image", "voice"):
        body[reply.kind] = {"media_id": _text(reply.value)}
    elif reply.kind == "video":
        fields = {key: _text(value) for key, value in reply.value.items()}
        body["video"] = {key: fields[key] for key in ("media_id", "title", "description") if fields.get(key)}
    elif reply.kind == "music":
        fields = {key: _text(value) for key, value in reply.value.items()}
        body["music"] = {
            "title": fields.get("title", ""),
            "description": fields.get("description", ""),
            "musicurl": fields.get("music_url", ""),
            "hqmusicurl": fields.get("hq_music_url", ""),
            "thumb_media_id": fields.get("thumb_media_id", ""),
        }
    else:
        raise NotSendable(f"a {reply.kind!r} reply has no customer-service form")
    return body


def encode(body: dict[str, Any]) -> bytes:
    """UTF-8 JSON with Chinese as is: WeChat has been reported to show \\uXXXX escapes literally."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
