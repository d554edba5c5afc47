"""Pure: what the profile page shows, from WeChat's /sns/userinfo answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

UNKNOWN_NICKNAME = "微信用户"
GENDERS = {1: "男", 2: "女"}
WITHHELD = "微信未提供"
WITHHELD_NOTE = "自 2021 年 10 月起，微信网页授权不再提供性别和地区（返回 0 和空值），所以这里显示“微信未提供”。"


@dataclass(frozen=True)
class ProfileView:
    nickname: str
    openid: str
    avatar_url: str
    avatar_initial: str
    gender: str
    region: str
    withheld_note: str
    unionid: str
    has_userinfo: bool


def avatar_url(headimgurl: Any, page_is_https: bool) -> str:
    """A safe avatar URL: only http(s); upgraded to https on an https page (WeChat's qlogo hosts serve
    both), since a browser blocks or warns on mixed content."""
    if not isinstance(headimgurl, str) or not headimgurl:
        return ""
    parts = urlsplit(headimgurl.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    if page_is_https and parts.scheme == "http":
        parts = parts._replace(scheme="https")
    return urlunsplit(parts)


def gender_text(sex: Any) -> str:
    try:
        return GENDERS.get(int(sex), WITHHELD)
    except (TypeError, ValueError):
        return WITHHELD


def region_text(userinfo: dict[str, Any]) -> str:
    parts = [str(userinfo.get(name) or "").strip() for name in ("country", "province", "city")]
    return " ".join(part for part in parts if part) or WITHHELD


def profile_view(openid: str, userinfo: dict[str, Any] | None, page_is_https: bool, unionid: str = "") -> ProfileView:
    """The page's fields; `userinfo` is None for snsapi_base sessions, which only know the openid."""
    info = userinfo or {}
    nickname = str(info.get("nickname") or "").strip() or UNKNOWN_NICKNAME
    gender = gender_text(info.get("sex"))
    region = region_text(info)
    withheld = userinfo is not None and (gender == WITHHELD or region == WITHHELD)
    return ProfileView(
        nickname=nickname,
        openid=openid,
        avatar_url=avatar_url(info.get("headimgurl"), page_is_https),
        avatar_initial=nickname[:1],
        gender=gender,
        region=region,
        withheld_note=WITHHELD_NOTE if withheld else "",
        unionid=str(info.get("unionid") or unionid or ""),
        has_userinfo=userinfo is not None,
    )
