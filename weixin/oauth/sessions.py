"""The follower's session: signed cookies (itsdangerous) naming a Redis record that holds the tokens.

The cookie carries only a random session id, so tokens never reach the browser; Redis keys hold a
SHA-256 of the id (and of used states), never the id itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from itsdangerous import BadSignature, URLSafeTimedSerializer

from weixin.oauth.sns_client import Grant

SESSION_COOKIE = "wx_session"
STATE_COOKIE = "wx_oauth_state"
# Long enough to read the consent page; the code WeChat returns then lives 5 minutes on its own.
STATE_LIFETIME = 600
# WeChat's refresh_token lives 30 days; past that the follower has to authorize again anyway.
SESSION_LIFETIME = 30 * 86400
SESSION_KEY_PREFIX = "wechat:oauth:session:"
USED_STATE_KEY_PREFIX = "wechat:oauth:state-used:"
_DERIVATION_LABEL = b"wechat-oauth-session-secret/v1"


def derive_session_secret(appsecret: str) -> str:
    """A stable cookie-signing key from the AppSecret, for when SESSION_SECRET is not set.

    HMAC keeps the AppSecret itself out of the signing key; rotating the AppSecret signs everyone out.
    """
    return hmac.new(appsecret.encode("utf-8"), _DERIVATION_LABEL, hashlib.sha256).hexdigest()


def signing_secret(session_secret: str, appsecret: str) -> str:
    if session_secret:
        return session_secret
    if appsecret:
        return derive_session_secret(appsecret)
    raise ValueError("set SESSION_SECRET or WECHAT_APPSECRET to sign session cookies")


def cookie_header(name: str, value: str, *, max_age: int, path: str = "/", secure: bool = False) -> str:
    """A Set-Cookie value: HttpOnly and SameSite=Lax always (Lax still sends it on WeChat's redirect
    back to the callback, a top-level GET), Secure when the site is https. max_age 0 deletes it."""
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max(0, max_age)}", "HttpOnly", "SameSite=Lax"]
    if max_age <= 0:
        parts.insert(3, "Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


class CookieSigner:
    """Signs and checks the two cookies; a salt per cookie so one can never pass for the other."""

    def __init__(self, secret: str) -> None:
        self._state = URLSafeTimedSerializer(secret, salt="wechat-oauth-state")
        self._session = URLSafeTimedSerializer(secret, salt="wechat-oauth-session")

    def state_cookie(self, state: str, scope: str) -> str:
        return self._state.dumps({"state": state, "scope": scope})

    def read_state_cookie(self, value: str | None) -> dict[str, str] | None:
        """The {state, scope} this visitor was sent off with, or None if missing, forged or stale."""
        data = self._loads(self._state, value, STATE_LIFETIME)
        if not isinstance(data, dict) or not isinstance(data.get("state"), str):
            return None
        return data

    def session_cookie(self, session_id: str) -> str:
        return self._session.dumps(session_id)

    def read_session_cookie(self, value: str | None) -> str | None:
        session_id = self._loads(self._session, value, SESSION_LIFETIME)
        return session_id if isinstance(session_id, str) and session_id else None

    @staticmethod
    def _loads(serializer: URLSafeTimedSerializer, value: str | None, max_age: int) -> Any:
        if not value:
            return None
        try:
            return serializer.loads(value, max_age=max_age)
        except BadSignature:  # also covers SignatureExpired
            return None


@dataclass
class Session:
    """One signed-in follower: the user tokens and the last profile WeChat gave."""

    openid: str
    scope: str
    access_token: str
    refresh_token: str
    expires_at: float
    refresh_expires_at: float
    unionid: str = ""
    profile: dict[str, Any] = field(default_factory=dict)
    profile_fetched_at: float = 0.0

    def __repr__(self) -> str:
        return f"Session(openid={self.openid!r}, scope={self.scope!r}, expires_at={self.expires_at!r})"

    @classmethod
    def from_grant(cls, grant: Grant, now: float | None = None) -> Session:
        now = time.time() if now is None else now
        return cls(
            openid=grant.openid,
            scope=grant.scope,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            expires_at=grant.expires_at,
            refresh_expires_at=now + SESSION_LIFETIME,
            unionid=grant.unionid,
        )

    def with_grant(self, grant: Grant) -> Session:
        """After a refresh: the new access token (WeChat keeps the refresh token until its 30 days end)."""
        self.access_token = grant.access_token
        self.refresh_token = grant.refresh_token or self.refresh_token
        self.expires_at = grant.expires_at
        return self

    def token_lapsed(self, now: float | None = None, margin: float = 60) -> bool:
        return (time.time() if now is None else now) >= self.expires_at - margin


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class SessionStore:
    """Sessions and used states in Redis; every key expires on its own."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def create(self, session: Session) -> str:
        session_id = secrets.token_urlsafe(32)
        self.save(session_id, session)
        return session_id

    def save(self, session_id: str, session: Session) -> None:
        ttl = max(1, int(session.refresh_expires_at - time.time()))
        self.client.set(SESSION_KEY_PREFIX + _digest(session_id), json.dumps(asdict(session)), ex=ttl)

    def load(self, session_id: str) -> Session | None:
        raw = self.client.get(SESSION_KEY_PREFIX + _digest(session_id))
        if raw is None:
            return None
        try:
            return Session(**json.loads(raw))
        except (TypeError, ValueError):
            return None

    def delete(self, session_id: str) -> None:
        self.client.delete(SESSION_KEY_PREFIX + _digest(session_id))

    def use_state(self, state: str) -> bool:
        """Record that `state` came back; False if it already had (a replayed callback URL)."""
        key = USED_STATE_KEY_PREFIX + _digest(state)
        return bool(self.client.set(key, "1", nx=True, ex=STATE_LIFETIME * 2))
