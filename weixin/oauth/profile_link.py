"""The replies-file handler that sends a follower the link to their profile page (a news card)."""

from __future__ import annotations

import logging

from wechatpy.messages import BaseMessage

from weixin.config import ConfigError, load_settings
from weixin.oauth.authorize import LOGIN_PATH, app_url
from weixin.render import HandlerContext

log = logging.getLogger("oauth")

NOT_CONFIGURED = "网页授权还没有配置好（需要设置 PUBLIC_BASE_URL），请稍后再试。"


def profile_link_articles(public_base_url: str) -> list[dict[str, str]]:
    """Pure: the one-article news card that opens /oauth/login inside WeChat."""
    return [
        {
            "title": "查看我的微信资料",
            "description": "点开并同意授权，就能看到你的头像、昵称和 openid。",
            "picurl": "",
            "url": app_url(public_base_url, LOGIN_PATH),
        }
    ]


def profile_link(message: BaseMessage, context: HandlerContext | None = None) -> list[dict[str, str]] | str:
    """replies.yaml: `reply: {handler: "weixin.oauth.profile_link:profile_link"}`. The web process passes its
    HandlerContext; a call without one reads the settings from the environment."""
    try:
        base = (context.settings if context is not None else load_settings()).public_base_url
    except ConfigError as error:
        log.error("profile link: configuration error: %s", error)
        base = ""
    if not base:
        return NOT_CONFIGURED
    return profile_link_articles(base)
