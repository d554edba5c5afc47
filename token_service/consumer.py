"""What consumers use: read the access_token / jsapi_ticket from Redis (never from WeChat), ask the
daemon for a compare-and-refresh, sign JS-SDK pages, and a wechatpy client wired to all of this."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import redis
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from token_service.policy import INVALID_TOKEN_ERRCODES
from token_service.settings import load_token_settings
from token_service.store import ACCESS_TOKEN, JSAPI_TICKET, TokenStore, credential_key, fingerprint
from weixin import redis_clients

WECHAT_PUBLIC_BASE = "https://api.weixin.qq.com"


class TokenUnavailable(Exception):
    """No usable credential in Redis (daemon not running, or WeChat refusing it: see the message)."""


def _unavailable(store: TokenStore, kind: str) -> TokenUnavailable:
    meta = store.meta(kind)
    reason = meta.get("last_error")
    hint = (
        f"WeChat refused the last refresh: {reason}"
        if reason
        else "is `python -m token_service run` running with the same REDIS_URL and WECHAT_APPID?"
    )
    return TokenUnavailable(f"no {kind} in Redis key {store.key(kind)}; {hint}")


class TokenClient:
    """One account's credentials as consumers see them: read from Redis (never from WeChat), and the
    daemon asked for a compare-and-refresh. A script or process makes one and keeps it (its Redis client
    reuses its connections); `TokenClient.from_env()` makes it from the environment."""

    def __init__(self, redis_client: redis.Redis, appid: str) -> None:
        self.redis = redis_client
        self.appid = appid

    @classmethod
    def from_env(cls) -> TokenClient:
        """The account and Redis of the environment (WECHAT_APPID, REDIS_URL; .env too)."""
        settings = load_token_settings()
        return cls(redis_clients.daemon(settings.redis_url), settings.appid)

    def close(self) -> None:
        self.redis.close()

    def access_token(self) -> str:
        """The current access_token, read from Redis only (one GET)."""
        return self._read(ACCESS_TOKEN)

    def jsapi_ticket(self) -> str:
        """The current jsapi_ticket for JS-SDK pages (see jsapi_signature)."""
        return self._read(JSAPI_TICKET)

    def _read(self, kind: str) -> str:
        value = self.redis.get(credential_key(self.appid, kind))  # the hot path: one GET, nothing else
        if value is None:
            raise _unavailable(TokenStore(self.redis, self.appid), kind)
        return value.decode() if isinstance(value, bytes) else value

    def request_refresh(self, bad_token: str, wait: float = 5.0) -> str:
        """Tell the daemon WeChat rejected `bad_token`; return the token that replaces it.

        The daemon refreshes only if `bad_token` is still the stored one, so many callers reporting the
        same token cause one refresh. Raises TokenUnavailable if no other token shows up within `wait` s.
        """
        store = TokenStore(self.redis, self.appid)
        current = store.read_value(ACCESS_TOKEN)
        if current is not None and current != bad_token:
            return current  # someone already replaced it
        pubsub = store.client.pubsub(ignore_subscribe_messages=True)
        try:
            # Subscribe before asking, then look again, so that a refresh between the two is not missed.
            pubsub.subscribe(store.channel(ACCESS_TOKEN))
            store.push_refresh_request(bad_token)
            deadline = time.monotonic() + wait
            while True:
                current = store.read_value(ACCESS_TOKEN)
                if current is not None and current != bad_token:
                    return current
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # The poll bound covers a missed message (e.g. a reconnect); normally the publish wakes us.
                pubsub.get_message(timeout=min(remaining, 0.25))
        finally:
            pubsub.close()
        meta = store.meta(ACCESS_TOKEN)
        detail = meta.get("last_error") or "no daemon answered (is `python -m token_service run` running?)"
        raise TokenUnavailable(
            f"access_token #{fingerprint(bad_token)} was not replaced within {wait:g}s: {detail}"
        )


@contextlib.contextmanager
def _token_client(redis_client: redis.Redis | None, appid: str | None) -> Iterator[TokenClient]:
    """For the one-call functions below: the given client and account, the rest from the environment. A
    client made here lives for this one call and is closed after it: the functions keep no process-wide
    default (a loop should make one TokenClient instead, and save a connection per call)."""
    settings = None if (redis_client is not None and appid) else load_token_settings()
    account = appid or settings.appid
    if redis_client is not None:
        yield TokenClient(redis_client, account)
        return
    client = TokenClient(redis_clients.daemon(settings.redis_url), account)
    try:
        yield client
    finally:
        client.close()


def get_access_token(redis_client: redis.Redis | None = None, appid: str | None = None) -> str:
    """The current access_token, read from Redis only (one GET); see TokenClient for a script that reads
    it more than once."""
    with _token_client(redis_client, appid) as tokens:
        return tokens.access_token()


def get_jsapi_ticket(redis_client: redis.Redis | None = None, appid: str | None = None) -> str:
    """The current jsapi_ticket for JS-SDK pages (see jsapi_signature)."""
    with _token_client(redis_client, appid) as tokens:
        return tokens.jsapi_ticket()


def request_refresh(
    bad_token: str, *, wait: float = 5.0, redis_client: redis.Redis | None = None, appid: str | None = None
) -> str:
    """TokenClient.request_refresh for a one-off call."""
    with _token_client(redis_client, appid) as tokens:
        return tokens.request_refresh(bad_token, wait)


def jsapi_signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK wx.config signature: sha1 of the sorted k=v pairs; the URL without its #fragment."""
    page_url = url.split("#", 1)[0]
    fields = {"jsapi_ticket": ticket, "noncestr": noncestr, "timestamp": str(timestamp), "url": page_url}
    text = "&".join(f"{name}={fields[name]}" for name in sorted(fields))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class TokenServiceClient(WeChatClient):
    """wechatpy's WeChatClient, but its access_token comes from the token service.

    On 40001/40014/42001 it asks the daemon for a compare-and-refresh and retries once; a second
    failure raises. It never fetches a token itself (wechatpy's own client re-fetches and recurses
    without bound, invalidating everyone else's token).
    """

    def __init__(
        self,
        appid: str | None = None,
        redis_client: redis.Redis | None = None,
        api_base: str | None = None,
        timeout: float = 10.0,
        refresh_wait: float = 10.0,
    ) -> None:
        settings = None if (appid and api_base and redis_client is not None) else load_token_settings()
        appid = appid or settings.appid
        super().__init__(appid, secret="", timeout=timeout, auto_retry=False)
        self.api_base = (api_base or settings.api_base).rstrip("/")
        self.API_BASE_URL = self.api_base + "/cgi-bin/"
        self.tokens = TokenClient(redis_client or redis_clients.daemon(settings.redis_url), appid)
        self.refresh_wait = refresh_wait

    @property
    def access_token(self) -> str:
        return self.tokens.access_token()

    def fetch_access_token(self) -> dict:
        raise TokenUnavailable("TokenServiceClient never fetches tokens; the token daemon does")

    def _url(self, url_or_endpoint: str, api_base_url: str | None) -> str:
        if not url_or_endpoint.startswith(("http://", "https://")):
            url_or_endpoint = (api_base_url or self.API_BASE_URL) + url_or_endpoint
        # wechatpy hard-codes api.weixin.qq.com in places; point all of it at WECHAT_API_BASE.
        if url_or_endpoint.startswith(WECHAT_PUBLIC_BASE):
            url_or_endpoint = self.api_base + url_or_endpoint[len(WECHAT_PUBLIC_BASE):]
        return url_or_endpoint

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        url = self._url(url_or_endpoint, kwargs.pop("api_base_url", None))
        params = kwargs.pop("params", None)
        params = dict(params) if isinstance(params, dict) else {}
        explicit_token = params.get("access_token")
        token = explicit_token or self.access_token
        try:
            return super()._request(method, url, params={**params, "access_token": token}, **kwargs)
        except WeChatClientException as error:
            if explicit_token or error.errcode not in INVALID_TOKEN_ERRCODES:
                raise
        fresh = self.tokens.request_refresh(token, wait=self.refresh_wait)
        # The one retry; auto_retry=False makes wechatpy raise instead of recursing.
        return super()._request(method, url, params={**params, "access_token": fresh}, **kwargs)
