"""The fake WeChat API platform as a thread-safe state machine: tokens, APIs, OAuth, faults, inspection.

No sockets here: `FakeWeChat.handle()` takes a parsed request and returns (status, body, headers); the
HTTP front is `sandbox.server`. Choices where WeChat is silent or where the sandbox has to pick:

* Errors are HTTP 200 `{"errcode": N, "errmsg": "... rid: ..."}` like WeChat; clients must match on
  errcode, never on errmsg. Unknown paths answer HTTP 404 `{"errcode": 40066, "errmsg": "invalid url ..."}`
  (40066 is WeChat's "invalid url"; not -1, which means "system busy, retry" and would invite retries).
  A GET-only API called with POST answers 43001, a POST-only one called with GET 43002.
* `/cgi-bin/token`: every call issues a new token; the previous one is cut to `overlap` seconds (or its
  own expiry, whichever comes first). A token past its expiry answers 42001; a superseded one 40001.
* `/cgi-bin/stable_token`, normal mode: the same token while more than `overlap` seconds remain,
  `expires_in` = the remaining seconds; in the last `overlap` seconds a new one is issued and the old
  one lives to its own expiry. `force_refresh: true` invalidates the previous stable token at once
  (WeChat: "会导致上次获取的 access_token 失效"). A forced call less than `stable_force_spacing` seconds
  after the last forced refresh does not rotate (WeChat: "否则不会刷新") and is answered as in normal
  mode; a forced call beyond `stable_force_daily` a day answers 45009, because it is a daily quota
  and silently returning the old token would hide a runaway force-refresh loop from the caller.
* Days (quotas) are China calendar days (UTC+8) on the platform clock. The classic quota counts the
  tokens issued (refused calls don't count); stable_token has WeChat's 500 000 calls a day, which a
  long load test of that endpoint alone can reach.
* Classic and stable tokens are both accepted by the APIs; neither invalidates the other.
* `custom/send`: an unknown or unsubscribed follower answers 45015, as WeChat cannot tell them apart
  from an expired window; an empty `touser` answers 40003. At most 5 messages per window opened by the
  follower's last message (45047 for the 6th).
* An unverified account (`unverified=True`, `python -m sandbox serve --unverified`, SANDBOX_UNVERIFIED=1, or
  POST /sandbox/unverified) lacks the customer-service permission: custom/send and custom/typing answer
  48001 (api unauthorized), as they do for most personal subscription accounts. custom/typing otherwise
  checks `touser` and `command` (Typing or CancelTyping) and records the call (typing() lists them).
* `getticket` issues a fresh ticket (7200 s) on each call; callers are expected to cache it.
* The authorize page is shown for both scopes (real WeChat skips it for snsapi_base) so that tests can
  deny; any http(s) redirect_uri is accepted (the sandbox has no configured authorization domain).
* `reset()` forgets everything except the clock: time only moves forward.

HTTP control endpoints (JSON in, JSON out; not counted in call counts, never delayed or faulted):
  GET  /sandbox/state          call counts, delivered messages, current tokens masked, followers, faults
  GET  /sandbox/delivered      {"delivered": [custom/send bodies accepted, in order]}
  GET  /sandbox/tokens         {"classic": TOKEN|null, "stable": TOKEN|null} in full (fake tokens, for tests)
  POST /sandbox/token-check    {"access_token": T} -> {"valid": bool}
  POST /sandbox/advance        {"seconds": n}  moves the platform clock forward
  POST /sandbox/errors         {"endpoint": "/cgi-bin/token", "errcode": 40001, "count": 1}
  POST /sandbox/latency        {"endpoint": "/cgi-bin/token" or "*", "seconds": 0.5}  (0 removes)
  POST /sandbox/whitelist      {"allowed": false}  -> 40164 on the token endpoints
  POST /sandbox/unverified     {"unverified": true}  -> 48001 on custom/send and custom/typing
  GET  /sandbox/typing         {"typing": [custom/typing bodies accepted, in order]}
  POST /sandbox/followers      {"openid": .., "nickname": .., other profile fields}
  POST /sandbox/interactions   {"openid": ..}  the follower sent a message: opens the 48 h window
  POST /sandbox/oauth/code     {"openid": .., "scope": "snsapi_userinfo"} -> {"code": .., ...}, no page
  POST /sandbox/reset
Book paths (sandbox/books.py, Open Library's shapes; counted and delayable like the APIs): /search.json,
/api/books, /covers/b/..., /works/..., /books/..., /isbn/...; the default follower's avatar at its own path.
  GET|POST /sandbox/chat       the fake chat model's requests and faults (sandbox/chat_model.py)
Paths under /v1/ are the fake OpenAI-compatible chat model's (sandbox/chat_model.py), not WeChat's.
Bad control input answers HTTP 400 `{"errcode": 47001, "errmsg": ...}`.
"""

from __future__ import annotations

import copy
import hmac
import html
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sandbox.books import BookCatalogue
from sandbox.chat_model import FakeChatModel

Response = tuple[int, dict | str, dict]

DAY = 86400
CHINA_UTC_OFFSET = 8 * 3600
SERVICE_WINDOW_SECONDS = 48 * 3600
MESSAGES_PER_WINDOW = 5
OAUTH_CODE_LIFETIME = 300
OAUTH_ACCESS_TOKEN_LIFETIME = 7200
OAUTH_REFRESH_TOKEN_LIFETIME = 30 * DAY
TICKET_LIFETIME = 7200
STABLE_TOKEN_DAILY_QUOTA = 500_000
USER_LIST_PAGE_SIZE = 10_000
OAUTH_SCOPES = ("snsapi_base", "snsapi_userinfo")
TICKET_TYPES = ("jsapi", "wx_card")

DEFAULT_APPID = "wxsandbox00000001"
DEFAULT_SECRET = "sandbox-app-secret"
# The openid of WeChat's own documentation examples: recognisable in logs as the sandbox follower.
DEFAULT_FOLLOWER_OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
DEFAULT_FOLLOWER_NICKNAME = "沙盒测试用户"
DEFAULT_FOLLOWER_AVATAR = "https://thirdwx.qlogo.cn/mmopen/vi_32/sandboxTestFollowerAvatar/132"
# The sandbox serves that avatar itself at the same path, so that its authorize page shows it offline.
DEFAULT_AVATAR_PATH = urlsplit(DEFAULT_FOLLOWER_AVATAR).path
AVATAR_FILE = Path(__file__).resolve().parent / "templates" / "avatar.svg"
UNKNOWN_USER_NICKNAME = "微信用户"
# The simulator pushes from loopback, so that is where "WeChat's servers" are.
CALLBACK_IPS = ["127.0.0.1"]

CUSTOM_MESSAGE_TYPES = frozenset(
    {
        "text",
        "image",
        "voice",
        "video",
        "music",
        "news",
        "mpnews",
        "mpnewsarticle",
        "msgmenu",
        "wxcard",
        "miniprogrampage",
    }
)
BUTTON_TYPES_WITH_KEY = frozenset(
    {
        "click",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
    }
)
BUTTON_TYPES = BUTTON_TYPES_WITH_KEY | {
    "view",
    "media_id",
    "view_limited",
    "article_id",
    "article_view_limited",
    "miniprogram",
}

ERROR_MESSAGES: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest, "
    "could get access_token by getStableAccessToken",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40008: "invalid message type",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40029: "invalid code",
    40030: "invalid refresh_token",
    40066: "invalid url",
    40097: "invalid args",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41002: "appid missing",
    41003: "refresh_token missing",
    41004: "appsecret missing",
    41008: "missing code",
    41009: "missing openid",
    42001: "access_token expired",
    42002: "refresh_token expired",
    42003: "code expired",
    43001: "require GET method",
    43002: "require POST method",
    44002: "empty post data",
    44003: "empty news data",
    44004: "empty content",
    45008: "article size out of limit",
    45009: "reach max api daily quota limit, could get access_token by getStableAccessToken",
    45011: "api minute-quota reach limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    46003: "menu no exist",
    47001: "data format error",
    48001: "api unauthorized",
    # Authorize-page errors (shown on the page, never as JSON).
    10003: "redirect_uri域名与后台配置不一致",
    10005: "此公众号并没有这些scope的权限",
    10010: "scope为空",
    10011: "redirect_uri为空",
    10012: "appid为空",
}

_TEMPLATES = Path(__file__).resolve().parent / "templates"
AUTHORIZE_PAGE = Template((_TEMPLATES / "authorize.html").read_text(encoding="utf-8"))
AUTHORIZE_ERROR_PAGE = Template((_TEMPLATES / "authorize_error.html").read_text(encoding="utf-8"))
HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8"}


def mask(secret: str | None) -> str | None:
    """What may be shown of a token or secret: its first 6 characters."""
    return None if secret is None else secret[:6] + "..."


def china_day(timestamp: float) -> int:
    return int((timestamp + CHINA_UTC_OFFSET) // DAY)


class Clock:
    """Real time plus an offset that only moves forward, so tests can skip hours without sleeping."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds


@dataclass
class DailyCounter:
    """A count that starts again at 0 each China calendar day."""

    day: int = -1
    count: int = 0

    def value(self, now: float) -> int:
        return self.count if china_day(now) == self.day else 0

    def add(self, now: float) -> None:
        today = china_day(now)
        if today != self.day:
            self.day, self.count = today, 0
        self.count += 1


@dataclass
class AccessToken:
    kind: str  # "classic" or "stable"
    expires_at: float
    # Set when a newer token superseded this one; past it the token answers 40001.
    invalid_after: float | None = None


@dataclass
class User:
    """A WeChat user known to the sandbox: a follower, or someone who only went through OAuth."""

    openid: str
    nickname: str
    headimgurl: str = DEFAULT_FOLLOWER_AVATAR
    subscribed: bool = True
    subscribe_time: int = 0
    profile: dict[str, Any] = field(default_factory=dict)
    window_opened_at: float | None = None
    sent_in_window: int = 0


@dataclass
class OAuthCode:
    openid: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass
class OAuthGrant:
    """A web-authorization access token or refresh token."""

    openid: str
    scope: str
    expires_at: float


class _Reject(Exception):
    """Ends request handling with a WeChat error; raised by validation helpers."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.detail = detail


def _new_token(prefix: str) -> str:
    # WeChat's tokens are ~140 characters of [A-Za-z0-9_-]; clients must store >= 512.
    return f"{prefix}_{secrets.token_urlsafe(96)}"


def _rid() -> str:
    return f"rid: {secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def _error_body(errcode: int, detail: str | None = None) -> dict:
    message = detail or ERROR_MESSAGES.get(errcode, "sandbox injected error")
    return {"errcode": errcode, "errmsg": f"{message} {_rid()}"}


def _error(errcode: int, detail: str | None = None) -> Response:
    return 200, _error_body(errcode, detail), {}


def _ok(**fields: Any) -> Response:
    return 200, {"errcode": 0, "errmsg": "ok", **fields}, {}


def _json_object(body: bytes) -> dict:
    if not body.strip():
        raise _Reject(44002)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Reject(47001) from None
    if not isinstance(data, dict):
        raise _Reject(47001)
    return data


def _utf8_length(text: Any) -> int:
    return len(text.encode("utf-8")) if isinstance(text, str) else 0


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class FakeWeChat:
    """WeChat's API platform for one official account, held in memory behind one lock."""

    def __init__(
        self,
        appid: str = DEFAULT_APPID,
        secret: str = DEFAULT_SECRET,
        *,
        token_lifetime: float = 7200,
        overlap: float = 300,
        token_daily_quota: int = 2000,
        stable_force_daily: int = 20,
        stable_force_spacing: float = 30,
        clock: Clock | None = None,
        chat_model: FakeChatModel | None = None,
        unverified: bool = False,
    ) -> None:
        if not 0 <= overlap < token_lifetime:
            raise ValueError("overlap must be >= 0 and shorter than token_lifetime")
        self.appid = appid
        self._secret = secret
        self.token_lifetime = token_lifetime
        self.overlap = overlap
        self.token_daily_quota = token_daily_quota
        self.stable_force_daily = stable_force_daily
        self.stable_force_spacing = stable_force_spacing
        self.clock = clock or Clock()
        self.books = BookCatalogue()  # the offline book source (sandbox/books.py); stateless
        self.chat_model = chat_model or FakeChatModel()
        self._lock = threading.Lock()
        self._reset_state()
        self._unverified = unverified  # kept by reset(): it is what kind of account this is

    def __repr__(self) -> str:
        return f"FakeWeChat(appid={self.appid!r}, secret={mask(self._secret)!r})"

    def _reset_state(self) -> None:
        self._counts: Counter[str] = Counter()
        self._delivered: list[dict] = []
        self._typing: list[dict] = []
        self._tokens: dict[str, AccessToken] = {}
        self._current: dict[str, str | None] = {"classic": None, "stable": None}
        self._classic_quota = DailyCounter()
        self._stable_quota = DailyCounter()
        self._forced_refreshes = DailyCounter()
        self._last_forced_at: float | None = None
        self._injected: dict[str, list[int]] = {}
        self._latency: dict[str, float] = {}
        self._whitelisted = True
        self._users: dict[str, User] = {}
        self._menu: dict | None = None
        self._menu_id = 0
        self._current_ticket: str | None = None
        self._oauth_codes: dict[str, OAuthCode] = {}
        self._oauth_tokens: dict[str, OAuthGrant] = {}
        self._refresh_tokens: dict[str, OAuthGrant] = {}
        self._add_user(DEFAULT_FOLLOWER_OPENID, DEFAULT_FOLLOWER_NICKNAME, subscribed=True, profile={})

    # ----------------------------------------------------------------------------- dispatch

    def handle(
        self, method: str, path: str, query: dict[str, str], body: bytes, *, client_ip: str = "127.0.0.1",
        host: str = "", headers: dict[str, str] | None = None,
    ) -> Response:
        """Answer one request the way api.weixin.qq.com / open.weixin.qq.com would (and, for the paths
        sandbox/books.py serves, openlibrary.org; `host` is the request's Host, for its absolute URLs;
        under /v1/: the chat model)."""
        if path.startswith("/v1/"):
            return self.chat_model.handle(method, path, headers or {}, body)
        if path.startswith("/sandbox/"):
            return self._handle_control(method, path, body)
        with self._lock:
            delay = self._latency.get(path, self._latency.get("*", 0.0))
        if delay > 0:
            time.sleep(delay)  # outside the lock: a slow endpoint must not stall the others
        with self._lock:
            self._counts[path] += 1
            injected = self._injected.get(path)
            if injected:
                errcode = injected.pop(0)
                if not injected:
                    del self._injected[path]
                return _error(errcode)
            route = WECHAT_ROUTES.get(path)
            if route is None and method == "GET":
                if path == DEFAULT_AVATAR_PATH:
                    return 200, AVATAR_FILE.read_text(encoding="utf-8"), {"Content-Type": "image/svg+xml"}
                book_answer = self.books.handle(path, query, host)
                if book_answer is not None:
                    return book_answer
            if route is None:
                return 404, _error_body(40066, f"invalid url: the sandbox has no API at {path}"), {}
            required_method, handler = route
            if method != required_method:
                return _error(43001 if required_method == "GET" else 43002)
            try:
                return handler(self, query, body, client_ip)
            except _Reject as reject:
                return _error(reject.errcode, reject.detail)

    # ----------------------------------------------------------------------------- inspection

    def calls(self, endpoint: str) -> int:
        with self._lock:
            return self._counts.get(endpoint, 0)

    def call_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def delivered(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._delivered)

    def typing(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._typing)

    def set_unverified(self, unverified: bool) -> None:
        """An account without the customer-service permission: custom/send and custom/typing answer 48001."""
        with self._lock:
            self._unverified = bool(unverified)

    def is_token_valid(self, token: str) -> bool:
        with self._lock:
            return self._base_token_error(token) is None

    def current_stable_token(self) -> str | None:
        with self._lock:
            return self._current_token("stable")

    def current_classic_token(self) -> str | None:
        with self._lock:
            return self._current_token("classic")

    def state(self) -> dict:
        """Everything a test may want to look at, with tokens masked."""
        with self._lock:
            now = self.clock.now()
            return {
                "now": now,
                "appid": self.appid,
                "call_counts": dict(self._counts),
                "delivered": copy.deepcopy(self._delivered),
                "tokens": {
                    "classic": mask(self._current_token("classic")),
                    "stable": mask(self._current_token("stable")),
                    "jsapi_ticket": mask(self._current_ticket),
                },
                "classic_tokens_today": self._classic_quota.value(now),
                "forced_refreshes_today": self._forced_refreshes.value(now),
                "whitelisted": self._whitelisted,
                "unverified": self._unverified,
                "typing": copy.deepcopy(self._typing),
                "injected_errors": {path: list(codes) for path, codes in self._injected.items()},
                "latency": dict(self._latency),
                "menu": copy.deepcopy(self._menu),
                "followers": [
                    {
                        "openid": user.openid,
                        "nickname": user.nickname,
                        "subscribed": user.subscribed,
                        "window_open": self._window_open(user, now),
                        "sent_in_window": user.sent_in_window,
                    }
                    for user in self._users.values()
                ],
            }

    # ----------------------------------------------------------------------------- control

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def inject_error(self, endpoint: str, errcode: int, count: int = 1) -> None:
        """The next `count` calls of `endpoint` answer `errcode`, before any other check."""
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._injected.setdefault(endpoint, []).extend([int(errcode)] * count)

    def set_latency(self, endpoint: str, seconds: float) -> None:
        """Delay every call of `endpoint` ("*" = every API) by `seconds`; 0 removes the delay."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            if seconds:
                self._latency[endpoint] = float(seconds)
            else:
                self._latency.pop(endpoint, None)

    def set_ip_whitelisted(self, allowed: bool) -> None:
        with self._lock:
            self._whitelisted = bool(allowed)

    def add_follower(self, openid: str, nickname: str = UNKNOWN_USER_NICKNAME, **profile: Any) -> None:
        """Add (or update) a subscribed follower; `headimgurl` and any other profile field are kept."""
        if not openid:
            raise ValueError("openid must not be empty")
        with self._lock:
            self._add_user(openid, nickname, subscribed=True, profile=profile)

    def follower_interacted(self, openid: str) -> None:
        """The follower sent a message: (re)opens the 48-hour window with a fresh 5-message quota.

        An openid the sandbox has never seen becomes a follower, since only followers can message.
        """
        if not openid:
            raise ValueError("openid must not be empty")
        with self._lock:
            user = self._users.get(openid) or self._add_user(
                openid, UNKNOWN_USER_NICKNAME, subscribed=True, profile={}
            )
            user.subscribed = True
            user.window_opened_at = self.clock.now()
            user.sent_in_window = 0

    def issue_oauth_code(self, openid: str = DEFAULT_FOLLOWER_OPENID, scope: str = "snsapi_userinfo") -> str:
        """A fresh authorization code, as if the user had approved the authorize page."""
        if scope not in OAUTH_SCOPES:
            raise ValueError(f"scope must be one of {OAUTH_SCOPES}")
        if not openid:
            raise ValueError("openid must not be empty")
        with self._lock:
            return self._issue_code(openid, scope)

    def reset(self) -> None:
        with self._lock:
            self._reset_state()
        self.chat_model.reset()

    # ----------------------------------------------------------------------------- helpers (lock held)

    def _add_user(self, openid: str, nickname: str, *, subscribed: bool, profile: dict) -> User:
        profile = dict(profile)
        headimgurl = profile.pop("headimgurl", None)
        user = self._users.get(openid)
        if user is None:
            user = User(
                openid,
                nickname,
                headimgurl or DEFAULT_FOLLOWER_AVATAR,
                subscribed,
                int(self.clock.now()),
                profile,
            )
            self._users[openid] = user
        else:
            user.nickname = nickname
            user.headimgurl = headimgurl or user.headimgurl
            user.subscribed = user.subscribed or subscribed
            user.profile.update(profile)
        return user

    def _window_open(self, user: User, now: float) -> bool:
        return user.window_opened_at is not None and now < user.window_opened_at + SERVICE_WINDOW_SECONDS

    def _current_token(self, kind: str) -> str | None:
        token = self._current[kind]
        if token is None or self.clock.now() >= self._tokens[token].expires_at:
            return None
        return token

    def _base_token_error(self, token: str | None) -> int | None:
        if not token:
            return 41001
        record = self._tokens.get(token)
        if record is None:
            return 40001
        now = self.clock.now()
        if now >= record.expires_at:
            return 42001
        if record.invalid_after is not None and now >= record.invalid_after:
            return 40001
        return None

    def _require_base_token(self, query: dict[str, str]) -> None:
        errcode = self._base_token_error(query.get("access_token"))
        if errcode is not None:
            raise _Reject(errcode)

    def _check_appid(self, appid: Any) -> None:
        if not appid:
            raise _Reject(41002)
        if appid != self.appid:
            raise _Reject(40013)

    def _check_secret(self, secret: Any) -> None:
        if not secret:
            raise _Reject(41004)
        if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), self._secret.encode()):
            raise _Reject(40125)

    def _check_app_credentials(self, appid: Any, secret: Any, client_ip: str) -> None:
        """The token endpoints' checks, in WeChat's order: appid, secret, then the IP allowlist."""
        self._check_appid(appid)
        self._check_secret(secret)
        if not self._whitelisted:
            raise _Reject(40164, f"invalid ip {client_ip} ipv6 ::ffff:{client_ip}, not in whitelist")

    def _issue_token(self, kind: str, now: float) -> str:
        if len(self._tokens) > 50_000:
            # A long load test must not grow memory for ever; day-old expired tokens can go.
            self._tokens = {
                token: record for token, record in self._tokens.items() if record.expires_at > now - DAY
            }
        token = _new_token("88" if kind == "classic" else "89")
        self._tokens[token] = AccessToken(kind, now + self.token_lifetime)
        self._current[kind] = token
        return token

    def _token_answer(self, token: str, now: float) -> Response:
        remaining = int(self._tokens[token].expires_at - now)
        return 200, {"access_token": token, "expires_in": remaining}, {}

    def _issue_code(self, openid: str, scope: str) -> str:
        now = self.clock.now()
        if openid not in self._users:
            self._add_user(openid, UNKNOWN_USER_NICKNAME, subscribed=False, profile={})
        if len(self._oauth_codes) > 50_000:
            self._oauth_codes = {
                code: record for code, record in self._oauth_codes.items() if record.expires_at > now - DAY
            }
        code = secrets.token_urlsafe(24)
        self._oauth_codes[code] = OAuthCode(openid, scope, now + OAUTH_CODE_LIFETIME)
        return code

    def _oauth_grant(self, openid: str, scope: str, refresh_token: str | None, now: float) -> Response:
        access_token = _new_token("87")
        self._oauth_tokens[access_token] = OAuthGrant(openid, scope, now + OAUTH_ACCESS_TOKEN_LIFETIME)
        if refresh_token is None:
            refresh_token = _new_token("86")
            refresh_expires_at = now + OAUTH_REFRESH_TOKEN_LIFETIME
            self._refresh_tokens[refresh_token] = OAuthGrant(openid, scope, refresh_expires_at)
        return (
            200,
            {
                "access_token": access_token,
                "expires_in": OAUTH_ACCESS_TOKEN_LIFETIME,
                "refresh_token": refresh_token,
                "openid": openid,
                "scope": scope,
            },
            {},
        )

    def _require_oauth_token(self, query: dict[str, str]) -> OAuthGrant:
        token = query.get("access_token")
        if not token:
            raise _Reject(41001)
        grant = self._oauth_tokens.get(token)
        if grant is None:
            raise _Reject(40001)
        if self.clock.now() >= grant.expires_at:
            raise _Reject(42001)
        if query.get("openid") != grant.openid:
            raise _Reject(40003)
        return grant

    # ----------------------------------------------------------------------------- token endpoints

    def _api_token(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        if query.get("grant_type") != "client_credential":
            raise _Reject(40002)
        self._check_app_credentials(query.get("appid"), query.get("secret"), client_ip)
        now = self.clock.now()
        if self._classic_quota.value(now) >= self.token_daily_quota:
            raise _Reject(45009)
        self._classic_quota.add(now)
        previous = self._current["classic"]
        if previous is not None:
            record = self._tokens[previous]
            record.invalid_after = min(record.expires_at, now + self.overlap)
        return self._token_answer(self._issue_token("classic", now), now)

    def _api_stable_token(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        data = _json_object(body)
        if data.get("grant_type") != "client_credential":
            raise _Reject(40002)
        self._check_app_credentials(data.get("appid"), data.get("secret"), client_ip)
        force = data.get("force_refresh", False)
        if not isinstance(force, bool):
            raise _Reject(40097, "invalid args: force_refresh must be a JSON boolean")
        now = self.clock.now()
        if self._stable_quota.value(now) >= STABLE_TOKEN_DAILY_QUOTA:
            raise _Reject(45009)
        self._stable_quota.add(now)
        current = self._current_token("stable")
        spaced_out = self._last_forced_at is None or now - self._last_forced_at >= self.stable_force_spacing
        if force and (current is None or spaced_out):
            if self._forced_refreshes.value(now) >= self.stable_force_daily:
                raise _Reject(
                    45009,
                    f"reach max api daily quota limit: force_refresh is limited to "
                    f"{self.stable_force_daily} a day",
                )
            self._forced_refreshes.add(now)
            self._last_forced_at = now
            if current is not None:
                self._tokens[current].invalid_after = now
            return self._token_answer(self._issue_token("stable", now), now)
        if current is not None and self._tokens[current].expires_at - now > self.overlap:
            return self._token_answer(current, now)
        # The last `overlap` seconds: a new token; the old one lives to its own expiry.
        return self._token_answer(self._issue_token("stable", now), now)

    # ----------------------------------------------------------------------------- APIs with access_token

    def _custom_request(self, query: dict[str, str], body: bytes) -> tuple[dict, str]:
        """What custom/send and custom/typing check first: the token, the account's permission (an unverified
        account has none: 48001), the JSON body and its `touser`."""
        self._require_base_token(query)
        if self._unverified:
            raise _Reject(48001)
        data = _json_object(body)
        touser = data.get("touser")
        if not isinstance(touser, str) or not touser:
            raise _Reject(40003)
        return data, touser

    def _in_window(self, touser: str, now: float) -> User:
        """The follower, if they follow and wrote within 48 hours; else 45015."""
        user = self._users.get(touser)
        if user is None or not user.subscribed or not self._window_open(user, now):
            raise _Reject(45015)
        return user

    def _api_custom_send(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        data, touser = self._custom_request(query, body)
        msgtype = data.get("msgtype")
        if msgtype not in CUSTOM_MESSAGE_TYPES:
            raise _Reject(40008)
        content = data.get(msgtype)
        if not isinstance(content, dict):
            raise _Reject(47001, f"data format error: missing the {msgtype!r} object")
        if msgtype == "text" and not content.get("content"):
            raise _Reject(44004)
        if msgtype == "news":
            articles = content.get("articles")
            if not isinstance(articles, list) or not articles:
                raise _Reject(44003)
            if len(articles) > 1:
                raise _Reject(45008)
        user = self._in_window(touser, self.clock.now())
        if user.sent_in_window >= MESSAGES_PER_WINDOW:
            raise _Reject(45047)
        user.sent_in_window += 1
        self._delivered.append(data)
        return _ok()

    def _api_custom_typing(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        data, touser = self._custom_request(query, body)
        if data.get("command") not in ("Typing", "CancelTyping"):
            raise _Reject(47001, "data format error: command must be Typing or CancelTyping")
        self._in_window(touser, self.clock.now())
        self._typing.append(data)
        return _ok()

    def _api_getcallbackip(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_base_token(query)
        return 200, {"ip_list": list(CALLBACK_IPS)}, {}

    def _api_menu_create(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_base_token(query)
        data = _json_object(body)
        buttons = data.get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise _Reject(40016)
        for button in buttons:
            if not isinstance(button, dict):
                raise _Reject(47001)
            if not 1 <= _utf8_length(button.get("name")) <= 16:
                raise _Reject(40018)
            sub_buttons = button.get("sub_button")
            if sub_buttons:
                if not isinstance(sub_buttons, list) or len(sub_buttons) > 5:
                    raise _Reject(40023)
                for sub_button in sub_buttons:
                    if not isinstance(sub_button, dict):
                        raise _Reject(47001)
                    if not 1 <= _utf8_length(sub_button.get("name")) <= 60:
                        raise _Reject(40025)
                    _check_button_action(sub_button, type_error=40024, key_error=40026, url_error=40027)
            else:
                _check_button_action(button, type_error=40017, key_error=40019, url_error=40020)
        self._menu_id += 1
        self._menu = {"button": copy.deepcopy(buttons), "menuid": self._menu_id}
        return _ok()

    def _api_menu_get(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_base_token(query)
        if self._menu is None:
            raise _Reject(46003)
        return 200, {"menu": copy.deepcopy(self._menu)}, {}

    def _api_menu_delete(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_base_token(query)
        self._menu = None
        return _ok()

    def _api_getticket(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_base_token(query)
        if query.get("type") not in TICKET_TYPES:
            raise _Reject(40097, "invalid args: type must be jsapi or wx_card")
        ticket = secrets.token_urlsafe(64)
        self._current_ticket = ticket
        return _ok(ticket=ticket, expires_in=TICKET_LIFETIME)

    def _api_user_get(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_base_token(query)
        followers = [user.openid for user in self._users.values() if user.subscribed]
        start = 0
        next_openid = query.get("next_openid", "")
        if next_openid:
            if next_openid not in followers:
                raise _Reject(40003)
            start = followers.index(next_openid) + 1
        page = followers[start : start + USER_LIST_PAGE_SIZE]
        answer: dict[str, Any] = {"total": len(followers), "count": len(page)}
        if page:
            answer["data"] = {"openid": page}
        answer["next_openid"] = page[-1] if page else ""
        return 200, answer, {}

    def _api_user_info(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_base_token(query)
        openid = query.get("openid")
        if not openid:
            raise _Reject(41009)
        user = self._users.get(openid)
        if user is None:
            raise _Reject(40003)
        if not user.subscribed:
            return 200, {"subscribe": 0, "openid": openid}, {}
        # Since 2021-12-27 nickname and avatar are empty here, and since 2021-10 sex/region too.
        return (
            200,
            {
                "subscribe": 1,
                "openid": openid,
                "nickname": "",
                "sex": 0,
                "language": user.profile.get("language", "zh_CN"),
                "city": "",
                "province": "",
                "country": "",
                "headimgurl": "",
                "subscribe_time": user.subscribe_time,
                "remark": user.profile.get("remark", ""),
                "groupid": 0,
                "tagid_list": list(user.profile.get("tagid_list", [])),
                "subscribe_scene": user.profile.get("subscribe_scene", "ADD_SCENE_QR_CODE"),
                "qr_scene": 0,
                "qr_scene_str": "",
            },
            {},
        )

    # ----------------------------------------------------------------------------- OAuth

    def _authorize_request(self, query: dict[str, str]) -> tuple[str, str, str, str]:
        """The validated (redirect_uri, scope, state, openid) of an authorize request."""
        appid = query.get("appid", "")
        if not appid:
            raise _Reject(10012)
        if appid != self.appid:
            raise _Reject(40013)
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri:
            raise _Reject(10011)
        if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
            raise _Reject(10003)
        scope = query.get("scope", "")
        if not scope:
            raise _Reject(10010)
        if scope not in OAUTH_SCOPES:
            raise _Reject(10005)
        return redirect_uri, scope, query.get("state", ""), query.get("openid") or DEFAULT_FOLLOWER_OPENID

    def _authorize_error_page(self, reject: _Reject) -> Response:
        page = AUTHORIZE_ERROR_PAGE.substitute(
            errcode=reject.errcode, errmsg=html.escape(ERROR_MESSAGES.get(reject.errcode, ""))
        )
        return 200, page, dict(HTML_HEADERS)

    def _page_authorize(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        try:
            redirect_uri, scope, state, openid = self._authorize_request(query)
        except _Reject as reject:
            return self._authorize_error_page(reject)
        user = self._users.get(openid)
        nickname = user.nickname if user else UNKNOWN_USER_NICKNAME
        avatar = user.headimgurl if user else DEFAULT_FOLLOWER_AVATAR
        if avatar == DEFAULT_FOLLOWER_AVATAR:
            avatar = DEFAULT_AVATAR_PATH  # served by the sandbox itself: the page works offline
        params = {
            "appid": self.appid,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "openid": openid,
        }
        confirm = "/connect/oauth2/authorize/confirm?"
        scope_text = (
            "获取你的昵称、头像"
            if scope == "snsapi_userinfo"
            else "获取你的身份标识（静默授权 snsapi_base：真实微信不显示此页）"
        )
        page = AUTHORIZE_PAGE.substitute(
            nickname=html.escape(nickname),
            avatar=html.escape(avatar, quote=True),
            openid=html.escape(openid),
            appid=html.escape(self.appid),
            scope=html.escape(scope),
            scope_text=html.escape(scope_text),
            approve_url=html.escape(confirm + urlencode({**params, "decision": "approve"}), quote=True),
            deny_url=html.escape(confirm + urlencode({**params, "decision": "deny"}), quote=True),
        )
        return 200, page, dict(HTML_HEADERS)

    def _page_authorize_confirm(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        try:
            redirect_uri, scope, state, openid = self._authorize_request(query)
        except _Reject as reject:
            return self._authorize_error_page(reject)
        decision = query.get("decision")
        if decision == "approve":
            code = self._issue_code(openid, scope)
            return 302, "", {"Location": _with_query(redirect_uri, [("code", code), ("state", state)])}
        if decision == "deny":
            return 302, "", {"Location": _with_query(redirect_uri, [("state", state)])}
        return self._authorize_error_page(_Reject(40097))

    def _api_oauth_access_token(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._check_appid(query.get("appid"))
        self._check_secret(query.get("secret"))
        if query.get("grant_type") != "authorization_code":
            raise _Reject(40002)
        code = query.get("code")
        if not code:
            raise _Reject(41008)
        record = self._oauth_codes.get(code)
        if record is None:
            raise _Reject(40029)
        if record.used:
            raise _Reject(40163)
        now = self.clock.now()
        if now >= record.expires_at:
            raise _Reject(42003)
        record.used = True
        return self._oauth_grant(record.openid, record.scope, None, now)

    def _api_oauth_refresh_token(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._check_appid(query.get("appid"))
        if query.get("grant_type") != "refresh_token":
            raise _Reject(40002)
        refresh_token = query.get("refresh_token")
        if not refresh_token:
            raise _Reject(41003)
        grant = self._refresh_tokens.get(refresh_token)
        if grant is None:
            raise _Reject(40030)
        now = self.clock.now()
        if now >= grant.expires_at:
            raise _Reject(42002)
        return self._oauth_grant(grant.openid, grant.scope, refresh_token, now)

    def _api_sns_userinfo(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        grant = self._require_oauth_token(query)
        if grant.scope != "snsapi_userinfo":
            raise _Reject(48001)
        user = self._users.get(grant.openid)
        nickname = user.nickname if user else UNKNOWN_USER_NICKNAME
        answer: dict[str, Any] = {
            "openid": grant.openid,
            "nickname": nickname,
            # Since 2021-10 WeChat no longer gives gender and region: fields kept, values blank.
            "sex": 0,
            "province": "",
            "city": "",
            "country": "",
            "headimgurl": user.headimgurl if user else DEFAULT_FOLLOWER_AVATAR,
            "privilege": [],
        }
        if user and user.profile.get("unionid"):
            answer["unionid"] = user.profile["unionid"]
        return 200, answer, {}

    def _api_sns_auth(self, query: dict[str, str], body: bytes, client_ip: str) -> Response:
        self._require_oauth_token(query)
        return _ok()

    # ----------------------------------------------------------------------------- HTTP control

    def _handle_control(self, method: str, path: str, body: bytes) -> Response:
        route = CONTROL_ROUTES.get(path)
        if route is None:
            return 404, _error_body(40066, f"invalid url: no sandbox control endpoint at {path}"), {}
        required_method, handler = route
        if method != required_method:
            return 405, _error_body(43001 if required_method == "GET" else 43002), {}
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            return 200, {"errcode": 0, "errmsg": "ok", **(handler(self, data) or {})}, {}
        except (ValueError, KeyError, TypeError) as error:
            return 400, {"errcode": 47001, "errmsg": f"data format error: {error}"}, {}

    def _control_oauth_code(self, data: dict) -> dict:
        openid = data.get("openid") or DEFAULT_FOLLOWER_OPENID
        scope = data.get("scope") or "snsapi_userinfo"
        code = self.issue_oauth_code(openid, scope)
        return {"code": code, "openid": openid, "scope": scope, "expires_in": OAUTH_CODE_LIFETIME}

    def _control_token_check(self, data: dict) -> dict:
        return {"valid": self.is_token_valid(str(data["access_token"]))}

    def _control_tokens(self, data: dict) -> dict:
        with self._lock:
            return {"classic": self._current_token("classic"), "stable": self._current_token("stable")}

    def _control_add_follower(self, data: dict) -> None:
        profile = dict(data)
        openid = profile.pop("openid")
        self.add_follower(openid, profile.pop("nickname", UNKNOWN_USER_NICKNAME), **profile)


def _json_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected a JSON boolean (true/false)")
    return value


def _check_button_action(button: dict, *, type_error: int, key_error: int, url_error: int) -> None:
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        raise _Reject(type_error)
    if kind in BUTTON_TYPES_WITH_KEY and not 1 <= _utf8_length(button.get("key")) <= 128:
        raise _Reject(key_error)
    if kind == "view" and not 1 <= _utf8_length(button.get("url")) <= 1024:
        raise _Reject(url_error)
    if kind in ("media_id", "view_limited") and not button.get("media_id"):
        raise _Reject(40097, "invalid args: media_id missing")
    if kind in ("article_id", "article_view_limited") and not button.get("article_id"):
        raise _Reject(40097, "invalid args: article_id missing")
    if kind == "miniprogram" and not (button.get("appid") and button.get("pagepath") and button.get("url")):
        raise _Reject(40097, "invalid args: miniprogram buttons need appid, pagepath and url")


ApiHandler = Callable[[FakeWeChat, dict[str, str], bytes, str], Response]
WECHAT_ROUTES: dict[str, tuple[str, ApiHandler]] = {
    "/cgi-bin/token": ("GET", FakeWeChat._api_token),
    "/cgi-bin/stable_token": ("POST", FakeWeChat._api_stable_token),
    "/cgi-bin/message/custom/send": ("POST", FakeWeChat._api_custom_send),
    "/cgi-bin/message/custom/typing": ("POST", FakeWeChat._api_custom_typing),
    "/cgi-bin/getcallbackip": ("GET", FakeWeChat._api_getcallbackip),
    "/cgi-bin/menu/create": ("POST", FakeWeChat._api_menu_create),
    "/cgi-bin/menu/get": ("GET", FakeWeChat._api_menu_get),
    "/cgi-bin/menu/delete": ("GET", FakeWeChat._api_menu_delete),
    "/cgi-bin/ticket/getticket": ("GET", FakeWeChat._api_getticket),
    "/cgi-bin/user/get": ("GET", FakeWeChat._api_user_get),
    "/cgi-bin/user/info": ("GET", FakeWeChat._api_user_info),
    "/connect/oauth2/authorize": ("GET", FakeWeChat._page_authorize),
    "/connect/oauth2/authorize/confirm": ("GET", FakeWeChat._page_authorize_confirm),
    "/sns/oauth2/access_token": ("GET", FakeWeChat._api_oauth_access_token),
    "/sns/oauth2/refresh_token": ("GET", FakeWeChat._api_oauth_refresh_token),
    "/sns/userinfo": ("GET", FakeWeChat._api_sns_userinfo),
    "/sns/auth": ("GET", FakeWeChat._api_sns_auth),
}

ControlHandler = Callable[[FakeWeChat, dict], dict | None]
CONTROL_ROUTES: dict[str, tuple[str, ControlHandler]] = {
    "/sandbox/state": ("GET", lambda platform, data: platform.state()),
    "/sandbox/delivered": ("GET", lambda platform, data: {"delivered": platform.delivered()}),
    "/sandbox/typing": ("GET", lambda platform, data: {"typing": platform.typing()}),
    "/sandbox/unverified": ("POST", lambda platform, data: platform.set_unverified(_json_bool(data["unverified"]))),
    "/sandbox/tokens": ("GET", FakeWeChat._control_tokens),
    "/sandbox/token-check": ("POST", FakeWeChat._control_token_check),
    "/sandbox/advance": ("POST", lambda platform, data: platform.advance(float(data["seconds"]))),
    "/sandbox/errors": (
        "POST",
        lambda platform, data: platform.inject_error(
            str(data["endpoint"]), int(data["errcode"]), int(data.get("count", 1))
        ),
    ),
    "/sandbox/latency": (
        "POST",
        lambda platform, data: platform.set_latency(str(data["endpoint"]), float(data["seconds"])),
    ),
    "/sandbox/whitelist": (
        "POST",
        lambda platform, data: platform.set_ip_whitelisted(_json_bool(data["allowed"])),
    ),
    "/sandbox/followers": ("POST", FakeWeChat._control_add_follower),
    "/sandbox/interactions": (
        "POST",
        lambda platform, data: platform.follower_interacted(str(data["openid"])),
    ),
    "/sandbox/oauth/code": ("POST", FakeWeChat._control_oauth_code),
    "/sandbox/reset": ("POST", lambda platform, data: platform.reset()),
    "/sandbox/chat": ("GET", lambda platform, data: platform.chat_model.state()),
    "/sandbox/chat/configure": ("POST", lambda platform, data: platform.chat_model.configure(data)),
}
