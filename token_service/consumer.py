"""What consumers use: read the access_token / jsapi_ticket from Redis (never from WeChat), ask the
daemon for a compare-and-refresh, sign JS-SDK pages, and a wechatpy client wired to all of this."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class _Copy:
    """One credential as last read from Redis, with the monotonic times it was read and its Redis TTL ends."""

    value: str
    read_at: float
    expires_at: float


@dataclass
class _LocalCopies:
    """A TokenClient's process-local state: the copies, and the thread that refreshes them. Made again in a
    forked child (pid differs), so a child never trusts the parent's thread, lock or copies."""

    pid: int = field(default_factory=os.getpid)
    copies: dict[str, _Copy] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    refresher: threading.Thread | None = None
    generation: int = 0  # bumped when a copy is dropped, so that a refresh read before the drop is discarded


class TokenClient:
    """One account's credentials as consumers see them: read from Redis (never from WeChat), and the
    daemon asked for a compare-and-refresh. A script or process makes one and keeps it: it keeps a
    process-local copy of each credential, re-read from Redis every `refresh_interval` s by a daemon thread
    (started on first use, and again in a forked child), so a call in a loop costs no round trip.
    `TokenClient.from_env()` makes it from the environment.

    Why a copy a few seconds old is safe: WeChat keeps the previous token valid for minutes after a rotation
    (stable_token: to its own expiry; classic /cgi-bin/token: 5 more minutes), and the Redis TTL the copy
    honours ends before WeChat's expiry. The limit: a forced refresh (after someone's 40001) kills the old
    token at once; a copy then gets one 40001, `request_refresh` drops it, and the next call reads Redis.
    A copy older than `max_age` s (the thread stalled, Redis slow) is not served: that call reads Redis.
    `local_copy=False` reads Redis on every call (one round trip), as the one-call functions below do.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        appid: str,
        *,
        local_copy: bool = True,
        refresh_interval: float = 1.0,
        max_age: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if local_copy and not 0 < refresh_interval < max_age:
            raise ValueError("refresh_interval must be > 0 and shorter than max_age")
        self.redis = redis_client
        self.appid = appid
        self.local_copy = local_copy
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        self.clock = clock
        self._local = _LocalCopies()

    @classmethod
    def from_env(cls) -> TokenClient:
        """The account and Redis of the environment (WECHAT_APPID, REDIS_URL; .env too)."""
        settings = load_token_settings()
        return cls(redis_clients.daemon(settings.redis_url), settings.appid)

    def close(self) -> None:
        self._local.stop.set()
        self.redis.close()

    def access_token(self) -> str:
        """The current access_token: the local copy while it is fresh, else read from Redis (never WeChat)."""
        return self._get(ACCESS_TOKEN)

    def jsapi_ticket(self) -> str:
        """The current jsapi_ticket for JS-SDK pages (see jsapi_signature)."""
        return self._get(JSAPI_TICKET)

    def drop_copy(self, kind: str = ACCESS_TOKEN) -> None:
        """Forget the local copy of `kind` at once: the next call reads Redis."""
        local = self._local
        with local.lock:
            local.generation += 1
            local.copies.pop(kind, None)

    def _get(self, kind: str) -> str:
        if not self.local_copy:
            return self._read(kind)
        local = self._local
        if local.pid != os.getpid():  # a forked child: nothing of the parent's state is trusted
            local = self._local = _LocalCopies()
        copy = local.copies.get(kind)
        if copy is not None and local.refresher is not None:
            now = self.clock()
            if now - copy.read_at < self.max_age and now < copy.expires_at:
                return copy.value  # the hot path: no I/O
        return self._read_into_copy(local, kind)

    def _read_into_copy(self, local: _LocalCopies, kind: str) -> str:
        generation = local.generation
        value, expires_at = self._read_with_expiry(kind)
        self._keep(local, kind, value, expires_at, generation)
        if local.refresher is None or not local.refresher.is_alive():
            self._start_refresher(local)
        if value is None:
            raise _unavailable(TokenStore(self.redis, self.appid), kind)
        return value

    def _read_with_expiry(self, kind: str) -> tuple[str | None, float]:
        """The value and the monotonic time its Redis TTL ends: one round trip (GET and PTTL pipelined)."""
        key = credential_key(self.appid, kind)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        value, ttl_ms = pipe.execute()
        read_at = self.clock()
        if value is None:
            return None, read_at
        # No TTL (-1) is never written by the daemon; such a value is kept for max_age at most.
        expires_at = read_at + (ttl_ms / 1000 if ttl_ms >= 0 else self.max_age)
        return (value.decode() if isinstance(value, bytes) else value), expires_at

    def _keep(self, local: _LocalCopies, kind: str, value: str | None, expires_at: float, generation: int) -> None:
        with local.lock:
            if local.generation != generation:
                return  # dropped while this read was in flight: it may hold the rejected token
            if value is None:
                local.copies.pop(kind, None)
            else:
                local.copies[kind] = _Copy(value, self.clock(), expires_at)

    def _start_refresher(self, local: _LocalCopies) -> None:
        with local.lock:
            if local.stop.is_set() or (local.refresher is not None and local.refresher.is_alive()):
                return  # closed, or another caller started it
            # The thread holds only a weak reference: a client nobody uses any more stops its thread.
            local.refresher = threading.Thread(
                target=_refresh_copies, args=(weakref.ref(self), local), name=f"token-copy-{self.appid}",
                daemon=True,
            )
            local.refresher.start()

    def _read(self, kind: str) -> str:
        value = self.redis.get(credential_key(self.appid, kind))  # one GET, nothing else
        if value is None:
            raise _unavailable(TokenStore(self.redis, self.appid), kind)
        return value.decode() if isinstance(value, bytes) else value

    def request_refresh(self, bad_token: str, wait: float = 5.0) -> str:
        """Tell the daemon WeChat rejected `bad_token`; return the token that replaces it.

        The daemon refreshes only if `bad_token` is still the stored one, so many callers reporting the
        same token cause one refresh. Raises TokenUnavailable if no other token shows up within `wait` s.
        """
        self.drop_copy(ACCESS_TOKEN)  # at once: whatever happens below, the next call reads Redis
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


def _refresh_copies(client_ref: weakref.ref[TokenClient], local: _LocalCopies) -> None:
    """The refresher thread: re-read every kept credential from Redis each refresh_interval, until the
    client is closed or gone, or a fork made a new state. A failed read keeps the copy; it ages out."""
    while True:
        client = client_ref()
        if client is None or client._local is not local or local.stop.is_set():
            return
        interval = client.refresh_interval
        for kind in list(local.copies):
            generation = local.generation
            try:
                value, expires_at = client._read_with_expiry(kind)
            except redis.RedisError:
                continue
            client._keep(local, kind, value, expires_at, generation)
        del client
        if local.stop.wait(interval):
            return


@contextlib.contextmanager
def _token_client(redis_client: redis.Redis | None, appid: str | None) -> Iterator[TokenClient]:
    """For the one-call functions below: the given client and account, the rest from the environment. A
    client made here lives for this one call and is closed after it: the functions keep no process-wide
    default (a loop should make one TokenClient instead, and save a connection per call)."""
    settings = None if (redis_client is not None and appid) else load_token_settings()
    account = appid or settings.appid
    if redis_client is not None:
        yield TokenClient(redis_client, account, local_copy=False)
        return
    client = TokenClient(redis_clients.daemon(settings.redis_url), account, local_copy=False)
    try:
        yield client
    finally:
        client.close()


def get_access_token(redis_client: redis.Redis | None = None, appid: str | None = None) -> str:
    """The current access_token, read from Redis only (one GET on every call: this function keeps no
    process state). A script that reads it in a loop holds a TokenClient instead: its local copy makes a
    read cost no round trip."""
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
