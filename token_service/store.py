"""The token service's Redis layout: token and jsapi_ticket keys, their metadata, the leader lock,
refresh requests, and the forced-refresh log. Every write of a credential is atomic and has a TTL.

Keys for appid A (a shell script only needs the first one: `redis-cli GET wechat:access_token:A`):
  wechat:access_token:A              plain string, PX TTL ending before WeChat's expiry
  wechat:access_token:A:meta         hash: fetched_at, expires_at, source, fingerprint, mac, leader, last_error...
  wechat:access_token:A:requests     list of fingerprints of tokens consumers found invalid
  wechat:access_token:A:updated      pub/sub channel; the new fingerprint is published on every write
  wechat:access_token:A:forced       sorted set of forced-refresh times (rate limit)
  wechat:jsapi_ticket:A (+ :meta, :updated)   the same for the JS-SDK ticket
  wechat:lock:token:A                the leader's lease: owner id, SET NX PX, renewed while held
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import redis

ACCESS_TOKEN = "access_token"
JSAPI_TICKET = "jsapi_ticket"
KINDS = (ACCESS_TOKEN, JSAPI_TICKET)

# Writes the credential and its metadata only while `owner` still holds the lock (a leader that lost
# its lease during a slow call must not overwrite its successor), and never without a TTL.
_WRITE_SCRIPT = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
if (not ttl) or ttl <= 0 then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('HDEL', KEYS[2], 'last_error', 'last_errcode', 'last_error_at')
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Removes a credential nobody vouches for, only if it is still that value and we still lead.
_DISCARD_SCRIPT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
return redis.call('DEL', KEYS[1])
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
REQUEST_TTL_SECONDS = 120
# Domain separation: the AppSecret-derived key signs the store's metadata and nothing else.
_MAC_KEY_LABEL = b"token_service: metadata of a stored credential, v1"
FORCED_WINDOW_SECONDS = 24 * 3600


def fingerprint(value: str) -> str:
    """A short, non-reversible name for a token: what logs, requests and status show instead of it."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def masked(value: str | None) -> str:
    return "<none>" if not value else f"#{fingerprint(value)}"


def credential_key(appid: str, kind: str = ACCESS_TOKEN) -> str:
    """The plain string key holding the credential: what any script GETs."""
    return f"wechat:{kind}:{appid}"


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Credential:
    """A stored access_token or jsapi_ticket with the metadata written beside it."""

    value: str
    fetched_at: float
    expires_at: float  # WeChat's expiry (epoch seconds), not the Redis TTL
    source: str
    # False: the value has no metadata of a token daemon of this account (written by hand, or by
    # someone with Redis access); a daemon must not adopt it.
    vouched: bool = True

    def remaining(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)


class TokenStore:
    """All Redis reads and writes of the token service for one appid.

    With the AppSecret (the daemons have it, consumers do not), every write carries a `mac` of the
    value and its times, and `read` vouches only for values whose mac checks out: someone who can
    write to Redis but does not know the AppSecret cannot make a daemon adopt a token. Without it,
    `read` can only check that the metadata's fingerprint matches the value (catches mistakes,
    not an attacker)."""

    def __init__(self, client: redis.Redis, appid: str, secret: str | None = None) -> None:
        self.client = client
        self.appid = appid
        self._mac_key = hmac.new(secret.encode(), _MAC_KEY_LABEL, hashlib.sha256).digest() if secret else None
        self._write = client.register_script(_WRITE_SCRIPT)
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)
        self._discard = client.register_script(_DISCARD_SCRIPT)

    def _mac(self, kind: str, value: str, fetched_at: str, expires_at: str) -> str:
        text = "\n".join((self.appid, kind, value, fetched_at, expires_at))
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()

    def _vouched(self, kind: str, value: str, meta: dict[str, str]) -> bool:
        if meta.get("fingerprint") != fingerprint(value) or "fetched_at" not in meta or "expires_at" not in meta:
            return False
        if self._mac_key is None:
            return True
        expected = self._mac(kind, value, meta["fetched_at"], meta["expires_at"])
        return hmac.compare_digest(expected, meta.get("mac") or "")

    # key names -------------------------------------------------------------------------------
    def key(self, kind: str = ACCESS_TOKEN) -> str:
        return credential_key(self.appid, kind)

    def meta_key(self, kind: str = ACCESS_TOKEN) -> str:
        return f"{self.key(kind)}:meta"

    def channel(self, kind: str = ACCESS_TOKEN) -> str:
        return f"{self.key(kind)}:updated"

    @property
    def requests_key(self) -> str:
        return f"{self.key(ACCESS_TOKEN)}:requests"

    @property
    def forced_key(self) -> str:
        return f"{self.key(ACCESS_TOKEN)}:forced"

    @property
    def lock_key(self) -> str:
        return f"wechat:lock:token:{self.appid}"

    # credentials ------------------------------------------------------------------------------
    def read_value(self, kind: str = ACCESS_TOKEN) -> str | None:
        return _text(self.client.get(self.key(kind)))

    def meta(self, kind: str = ACCESS_TOKEN) -> dict[str, str]:
        raw = self.client.hgetall(self.meta_key(kind))
        return {_text(name): _text(value) for name, value in raw.items()}

    def read(self, kind: str = ACCESS_TOKEN) -> Credential | None:
        """The stored credential with its expiry; a value nobody vouches for (see the class) gets its
        Redis TTL as its life and `vouched=False`."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.key(kind))
        pipe.pttl(self.key(kind))
        pipe.hgetall(self.meta_key(kind))
        value, pttl, raw_meta = pipe.execute()
        value = _text(value)
        if not value:
            return None
        meta = {_text(name): _text(field) for name, field in raw_meta.items()}
        now = time.time()
        if self._vouched(kind, value, meta):
            try:
                fetched_at, expires_at = float(meta["fetched_at"]), float(meta["expires_at"])
            except ValueError:
                pass
            else:
                return Credential(value, fetched_at, expires_at, meta.get("source", ""))
        # Written by something else: trust only the Redis TTL.
        return Credential(value, now, now + max(pttl, 0) / 1000, "unknown", vouched=False)

    def write(
        self, kind: str, owner: str, credential: Credential, expiry_margin: float, now: float | None = None
    ) -> bool:
        """Store atomically with a TTL ending `expiry_margin` s before WeChat's expiry; False if we
        are no longer the lock owner or the credential is already too close to its expiry."""
        now = time.time() if now is None else now
        ttl_ms = int((credential.expires_at - expiry_margin - now) * 1000)
        fields = {
            "fetched_at": f"{credential.fetched_at:.3f}",
            "expires_at": f"{credential.expires_at:.3f}",
            "source": credential.source,
            "fingerprint": fingerprint(credential.value),
            "leader": owner,
        }
        if self._mac_key is not None:
            fields["mac"] = self._mac(kind, credential.value, fields["fetched_at"], fields["expires_at"])
        flat = [item for pair in fields.items() for item in pair]
        result = self._write(
            keys=[self.key(kind), self.meta_key(kind), self.lock_key],
            args=[owner, credential.value, ttl_ms, self.channel(kind), fields["fingerprint"], *flat],
        )
        return int(result) == 1

    def discard(self, kind: str, owner: str, value: str) -> bool:
        """Delete the stored credential if it is still `value` and `owner` still holds the lock."""
        return int(self._discard(keys=[self.key(kind), self.lock_key], args=[owner, value])) == 1

    def record_error(self, kind: str, errcode: int | None, text: str, now: float | None = None) -> None:
        self.client.hset(
            self.meta_key(kind),
            mapping={
                "last_error": text,
                "last_errcode": "" if errcode is None else str(errcode),
                "last_error_at": f"{time.time() if now is None else now:.3f}",
            },
        )

    # the leader lock ---------------------------------------------------------------------------
    def acquire_lock(self, owner: str, lease: float) -> bool:
        return bool(self.client.set(self.lock_key, owner, nx=True, px=int(lease * 1000)))

    def renew_lock(self, owner: str, lease: float) -> bool:
        return int(self._renew(keys=[self.lock_key], args=[owner, int(lease * 1000)])) == 1

    def release_lock(self, owner: str) -> bool:
        return int(self._release(keys=[self.lock_key], args=[owner])) == 1

    def lock_holder(self) -> str | None:
        return _text(self.client.get(self.lock_key))

    # compare-and-refresh requests ----------------------------------------------------------------
    def push_refresh_request(self, bad_value: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(self.requests_key, fingerprint(bad_value))
        pipe.expire(self.requests_key, REQUEST_TTL_SECONDS)  # nobody serving: don't pile up forever
        pipe.execute()

    def wait_refresh_requests(self, timeout: float) -> list[str]:
        """Block up to `timeout` s for requests; return all that are queued (N reports, one batch)."""
        first = self.client.blpop([self.requests_key], timeout=max(timeout, 0.01))
        if first is None:
            return []
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(self.requests_key, 0, -1)
        pipe.delete(self.requests_key)
        rest, _ = pipe.execute()
        return [_text(first[1]), *(_text(item) for item in rest)]

    # forced-refresh rate limit -------------------------------------------------------------------
    def forced_times(self, now: float | None = None) -> list[float]:
        now = time.time() if now is None else now
        self.client.zremrangebyscore(self.forced_key, 0, now - FORCED_WINDOW_SECONDS)
        return [float(score) for _, score in self.client.zrange(self.forced_key, 0, -1, withscores=True)]

    def record_forced(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self.forced_key, {f"{now:.6f}": now})
        pipe.expire(self.forced_key, FORCED_WINDOW_SECONDS + 60)
        pipe.execute()
