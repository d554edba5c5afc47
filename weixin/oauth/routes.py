"""The web.py pages of web authorization: /oauth/login, /oauth/callback, /me, /oauth/logout.

Every page goes through `page`, so a failure becomes a friendly Chinese page and one log line, never a
traceback. Tokens, codes and secrets are never logged.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import web

from weixin.config import Settings
from weixin.oauth import authorize
from weixin.oauth.profile import profile_view
from weixin.oauth.sessions import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    STATE_COOKIE,
    STATE_LIFETIME,
    CookieSigner,
    Session,
    SessionStore,
    cookie_header,
    signing_secret,
)
from weixin.oauth.sns_client import (
    ERRCODE_CODE_EXPIRED,
    ERRCODE_CODE_USED,
    ERRCODE_INVALID_CODE,
    REFRESH_DEAD_ERRCODES,
    TOKEN_LAPSED_ERRCODES,
    Deadline,
    SnsClient,
    WeChatError,
    WeChatUnreachable,
)

log = logging.getLogger("oauth")

TEMPLATES = Path(__file__).resolve().parent / "templates"
# All of a page's calls to WeChat fit in this, well inside uWSGI's 4 s harakiri.
PAGE_BUDGET_SECONDS = 3.0
HTML_CONTENT_TYPE = "text/html; charset=utf-8"


# --- pages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A WeUI result page: an icon (warn, info, success, waiting), a title, one sentence, buttons."""

    title: str
    text: str
    icon: str = "warn"
    primary_label: str = "重新授权"
    primary_href: str = ""
    secondary_label: str = ""
    secondary_href: str = ""
    form_action: str = ""


class PageError(Exception):
    """Ends a request with a friendly page; `status` is never 500 for a failure we expected."""

    def __init__(self, status: str, message: Message) -> None:
        super().__init__(message.title)
        self.status = status
        self.message = message


@dataclass
class Runtime:
    settings: Settings
    client: SnsClient
    store: SessionStore
    signer: CookieSigner | None
    problem: str  # why web authorization cannot work ("" when it can)
    render: Any

    @property
    def base_url(self) -> str:
        return self.settings.public_base_url

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def cookie_path(self) -> str:
        return urlsplit(self.base_url).path.rstrip("/") + "/"

    def url(self, path: str) -> str:
        return authorize.app_url(self.base_url, path)


def build_runtime(settings: Settings, sessions: redis.Redis) -> Runtime:
    """The pages' runtime for one account; `sessions` is the Redis client of its session store (the App's
    request-path client). Never fails: what is missing is reported by `problem` when a page is asked for."""
    missing = [
        name
        for name, value in (
            ("PUBLIC_BASE_URL", settings.public_base_url),
            ("WECHAT_APPID", settings.appid),
            ("WECHAT_APPSECRET", settings.appsecret),
        )
        if not value
    ]
    signer = None
    if settings.session_secret or settings.appsecret:
        signer = CookieSigner(signing_secret(settings.session_secret, settings.appsecret))
    static_prefix = urlsplit(settings.public_base_url).path.rstrip("/") + "/static"
    return Runtime(
        settings=settings,
        client=SnsClient(settings.api_base, settings.appid, settings.appsecret),
        store=SessionStore(sessions),
        signer=signer,
        problem=", ".join(missing),
        render=web.template.render(str(TEMPLATES), base="layout", globals={"static_prefix": static_prefix}),
    )


def runtime() -> Runtime:
    """This request's runtime: the App's (index.py sets `web.ctx.app` for every web.py request)."""
    return web.ctx.app.oauth


def ready_runtime() -> Runtime:
    current = runtime()
    if current.problem or current.signer is None:
        log.warning("web authorization is not configured: set %s", current.problem or "SESSION_SECRET")
        raise PageError(
            "503 Service Unavailable",
            Message("网页授权尚未配置", "管理员还没有配置好网页授权，请稍后再试。", icon="info", primary_label=""),
        )
    return current


def show(current: Runtime | None, message: Message) -> str:
    if current is None:
        current = runtime()
    web.header("Content-Type", HTML_CONTENT_TYPE)
    return str(current.render.message(message))


def page(handler: Callable[..., str]) -> Callable[..., str]:
    """Friendly pages for every failure; no page of this module is ever cached (it is personal)."""

    @functools.wraps(handler)
    def wrapper(*args: Any) -> str:
        web.header("Cache-Control", "no-store")
        try:
            return handler(*args)
        except PageError as error:
            web.ctx.status = error.status
            return show(None, error.message)
        except redis.RedisError as error:
            log.error("%s %s: Redis unavailable (%s)", web.ctx.method, web.ctx.path, type(error).__name__)
            web.ctx.status = "503 Service Unavailable"
            return show(None, Message("服务暂时不可用", "服务器开了点小差，请稍后再试。", primary_label=""))
        except web.HTTPError:
            raise
        except Exception:
            log.exception("%s %s failed", web.ctx.method, web.ctx.path)
            web.ctx.status = "500 Internal Server Error"
            web.ctx.headers = [(name, value) for name, value in web.ctx.headers if name.lower() != "content-type"]
            return show(None, Message("出了点问题", "页面出错了，我们会尽快修好，请稍后再试。", primary_label=""))

    return wrapper


def redirect(location: str, status: str = "302 Found") -> str:
    web.ctx.status = status
    web.header("Location", location)
    return ""


def set_cookie(current: Runtime, name: str, value: str, max_age: int) -> None:
    header = cookie_header(name, value, max_age=max_age, path=current.cookie_path, secure=current.secure_cookies)
    web.header("Set-Cookie", header, unique=False)


def retry_message(current: Runtime, title: str, text: str) -> Message:
    return Message(title, text, primary_href=current.url(authorize.LOGIN_PATH))


# --- the routes --------------------------------------------------------------------------------


class Login:
    @page
    def GET(self) -> str:
        current = ready_runtime()
        assert current.signer is not None
        scope = authorize.scope_for(web.input(scope=None).scope)
        state = authorize.new_state()
        set_cookie(current, STATE_COOKIE, current.signer.state_cookie(state, scope), STATE_LIFETIME)
        redirect_uri = authorize.callback_url(current.base_url)
        return redirect(
            authorize.authorize_url(current.settings.open_base, current.settings.appid, redirect_uri, scope, state)
        )


class Callback:
    @page
    def GET(self) -> str:
        current = ready_runtime()
        assert current.signer is not None
        query = web.input(code="", state="")
        set_cookie(current, STATE_COOKIE, "", 0)  # one callback per state, whatever happens below
        if not query.code:
            log.info("authorization refused by the follower")
            return show(current, retry_message(current, "你拒绝了授权", "没关系。需要时点下面的按钮，重新授权即可。"))
        expected = current.signer.read_state_cookie(web.cookies().get(STATE_COOKIE))
        if expected is None or not authorize.states_match(expected["state"], query.state):
            reason = "no valid state cookie" if expected is None else "state does not match the cookie"
            log.warning("callback rejected: %s (possible CSRF or an old link)", reason)
            raise bad_state(current)
        if not current.store.use_state(query.state):
            log.warning("callback rejected: state already used (a replayed callback URL)")
            raise bad_state(current)

        deadline = Deadline(PAGE_BUDGET_SECONDS)
        try:
            grant = current.client.exchange_code(query.code, deadline)
        except WeChatError as error:
            log.warning("code exchange failed: errcode=%d", error.errcode)
            raise code_error(current, error.errcode) from None
        except WeChatUnreachable as error:
            log.warning("code exchange failed: WeChat unreachable (%s)", error)
            raise unreachable(current) from None

        session = Session.from_grant(grant)
        if grant.scope == authorize.SCOPE_USERINFO:
            try:
                session.profile = current.client.userinfo(grant.access_token, grant.openid, deadline)
                session.profile_fetched_at = time.time()
            except (WeChatError, WeChatUnreachable) as error:
                log.warning("userinfo after login failed (%s); /me will try again", error)
        session_id = current.store.create(session)
        set_cookie(current, SESSION_COOKIE, current.signer.session_cookie(session_id), SESSION_LIFETIME)
        log.info("signed in openid=%s scope=%s", grant.openid, grant.scope)
        return redirect(current.url(authorize.PROFILE_PATH), "303 See Other")


class Me:
    @page
    def GET(self) -> str:
        current = ready_runtime()
        session_id, session = current_session(current)
        if session is None:
            return redirect(current.url(authorize.LOGIN_PATH))
        notice = ""
        userinfo: dict[str, Any] | None = None
        if session.scope == authorize.SCOPE_USERINFO:
            try:
                userinfo = fresh_userinfo(current, session, Deadline(PAGE_BUDGET_SECONDS))
                current.store.save(session_id, session)
            except RefreshTokenDead as error:
                log.info("refresh token no longer valid (errcode=%d); authorizing again", error.errcode)
                current.store.delete(session_id)
                set_cookie(current, SESSION_COOKIE, "", 0)
                return redirect(current.url(authorize.LOGIN_PATH))
            except (WeChatUnreachable, WeChatError) as error:
                log.warning("userinfo for the profile page failed (%s)", error)
                if not session.profile:
                    raise unreachable(current) from None
                userinfo = session.profile
                notice = "暂时连不上微信，下面是上次获取的资料。"
        view = profile_view(session.openid, userinfo, current.secure_cookies, session.unionid)
        web.header("Content-Type", HTML_CONTENT_TYPE)
        return str(
            current.render.me(view, notice, current.url(authorize.LOGIN_PATH), current.url("/oauth/logout"))
        )


class Logout:
    @page
    def GET(self) -> str:
        current = ready_runtime()
        # Signing out changes state, so it takes a POST (SameSite=Lax keeps other sites from sending one).
        return show(
            current,
            Message(
                "退出登录",
                "退出后，需要重新授权才能查看你的资料。",
                icon="info",
                primary_label="确认退出",
                form_action=current.url("/oauth/logout"),
                secondary_label="返回",
                secondary_href=current.url(authorize.PROFILE_PATH),
            ),
        )

    @page
    def POST(self) -> str:
        current = ready_runtime()
        session_id, session = current_session(current)
        if session_id:
            current.store.delete(session_id)
        set_cookie(current, SESSION_COOKIE, "", 0)
        if session is not None:
            log.info("signed out openid=%s", session.openid)
        return show(
            current,
            Message(
                "已退出登录",
                "你的登录信息已从本站清除。",
                icon="success",
                primary_label="重新授权",
                primary_href=current.url(authorize.LOGIN_PATH),
            ),
        )


# --- helpers -----------------------------------------------------------------------------------


class RefreshTokenDead(Exception):
    def __init__(self, errcode: int) -> None:
        super().__init__(errcode)
        self.errcode = errcode


def current_session(current: Runtime) -> tuple[str, Session | None]:
    assert current.signer is not None
    session_id = current.signer.read_session_cookie(web.cookies().get(SESSION_COOKIE))
    if not session_id:
        return "", None
    return session_id, current.store.load(session_id)


def refresh(current: Runtime, session: Session, deadline: Deadline) -> None:
    try:
        session.with_grant(current.client.refresh(session.refresh_token, deadline))
    except WeChatError as error:
        if error.errcode in REFRESH_DEAD_ERRCODES:
            raise RefreshTokenDead(error.errcode) from None
        raise
    log.info("user access token refreshed for openid=%s", session.openid)


def fresh_userinfo(current: Runtime, session: Session, deadline: Deadline) -> dict[str, Any]:
    """The profile now, refreshing the 2-hour user token first when it has lapsed by our clock, or once
    when WeChat says it has (its clock is the one that counts)."""
    if session.token_lapsed():
        refresh(current, session, deadline)
    try:
        info = current.client.userinfo(session.access_token, session.openid, deadline)
    except WeChatError as error:
        if error.errcode not in TOKEN_LAPSED_ERRCODES:
            raise
        refresh(current, session, deadline)
        info = current.client.userinfo(session.access_token, session.openid, deadline)
    session.profile = info
    session.profile_fetched_at = time.time()
    return info


def bad_state(current: Runtime) -> PageError:
    return PageError(
        "400 Bad Request",
        retry_message(current, "链接已失效", "这个授权链接已经用过、过期了，或者不是从本站发起的。请重新授权。"),
    )


CODE_ERRORS = {
    ERRCODE_INVALID_CODE: ("授权码无效", "微信说这个授权码无效。请重新授权。"),
    ERRCODE_CODE_USED: ("授权码已使用", "这个授权码已经用过了（可能是刷新了页面）。请重新授权。"),
    ERRCODE_CODE_EXPIRED: ("授权已超时", "授权码只在 5 分钟内有效。请重新授权。"),
}


def code_error(current: Runtime, errcode: int) -> PageError:
    if errcode in CODE_ERRORS:
        title, text = CODE_ERRORS[errcode]
        return PageError("400 Bad Request", retry_message(current, title, text))
    return PageError(
        "502 Bad Gateway",
        retry_message(current, "微信授权失败", f"微信返回了错误（errcode {errcode}）。请稍后重新授权。"),
    )


def unreachable(current: Runtime) -> PageError:
    return PageError(
        "502 Bad Gateway",
        retry_message(current, "暂时连不上微信", "微信服务器没有及时响应。请稍后再试。"),
    )
