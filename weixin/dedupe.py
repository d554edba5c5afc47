"""The retry cache in Redis: each message is handled once, and WeChat's retries get the same reply.

A reply that runs code claims the message first (`SET NX` with a short lease), then stores its reply
for the retries (about 5 s apart, up to 3); a retry that arrives while it is still running waits briefly
for that reply. A reply from the rules file alone has no side effects: it is rendered first and stored
by the claim itself, one round trip to Redis, which also binds the request's signed triple to its body
(replay check). If Redis is unreachable the message is answered anyway, with claims and fingerprints in
the server's own memory (weixin/local_dedupe.py).

A delivery only a moment old cannot be a retry: `claim_fresh` claims it in that memory instead and
writes the claim behind, off the request path (weixin/write_behind.py explains why that is safe).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from weixin.claim_script import CLAIM_SCRIPT, claim_entry
from weixin.local_dedupe import LocalClaims
from weixin.write_behind import LOCAL_SECONDS, Entry, RedisWriteBehind

log = logging.getLogger("dedupe")

PENDING = b"\x00pending"  # followed by ":<host>:<pid>" of the process handling the message
NOTHING = b"\x00nothing"  # the reply was "say nothing": retries answer `success` too
REPLY_TTL_SECONDS = 300  # WeChat retries within ~20 s; five minutes covers every retry with margin
REDIS_BACKOFF_SECONDS = 5.0  # after a Redis failure, don't pay a connection timeout on every request
DEFAULT_TIMESTAMP_WINDOW = 300  # WECHAT_TIMESTAMP_WINDOW's default in config.VARIABLES (a test checks)
# Whole-second timestamps and the time between the window check and the claim.
FINGERPRINT_SLACK_SECONDS = 5


class Outcome(enum.Enum):
    FIRST = "first"  # handle it
    DONE = "retry-answered"  # a retry of a finished message: send the stored reply
    IN_PROGRESS = "retry-in-progress"  # the first delivery is still running and did not finish in time
    UNAVAILABLE = "no-redis"  # Redis is down and the local stand-in could not help: handle it without dedupe
    REPLAYED = "replayed"  # a signed query string seen before, now with another body: refuse it


# KEYS[1] the message key; ARGV: the pending marker seen, the new one, lease (ms). 1 when taken over.
TAKEOVER_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

_HOST = socket.gethostname()


def pending_marker() -> bytes:
    """The claim of a message being handled: who handles it, so that a retry can tell if it died."""
    return PENDING + f":{_HOST}:{os.getpid()}".encode()


def handler_is_dead(marker: bytes) -> bool:
    """True when the marker names a process on this host that no longer exists (other hosts: unknown)."""
    try:
        host, pid = marker[len(PENDING) + 1 :].decode().rsplit(":", 1)
        if host != _HOST:
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, UnicodeDecodeError):
        return False
    return False


@dataclass(frozen=True)
class RequestFingerprint:
    """A signed triple (signature, timestamp, nonce) and the body it first came with. The signature covers
    only the Token, timestamp and nonce, in every mode: a triple seen in a log (a safe-mode push's too)
    could otherwise carry any body, plaintext included. WeChat's retries send the same bytes."""

    key: str
    body_digest: str
    ttl: int

    @classmethod
    def of(cls, appid: str, signature: str, timestamp: str, nonce: str, body: bytes, window: int) -> RequestFingerprint:
        """`window` is the timestamp window (WECHAT_TIMESTAMP_WINDOW, 0 when turned off)."""
        triple = hashlib.sha1(f"{signature}|{timestamp}|{nonce}".encode()).hexdigest()
        return cls(f"wechat:replay:{appid}:{triple}", hashlib.sha1(body).hexdigest(), fingerprint_ttl(window))


def fingerprint_ttl(window: int) -> int:
    """Seconds to remember a triple. A timestamp is accepted from `window` s before it until `window` s after
    it, so the same triple can come back up to twice the window after it was first seen. Without a window
    (an insecure setting) no lifetime is enough: the default window's is kept, to bound Redis's memory."""
    return 2 * (window if window > 0 else DEFAULT_TIMESTAMP_WINDOW) + FINGERPRINT_SLACK_SECONDS


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    key: str
    reply: str | None = None  # for DONE: the stored reply XML, or None for "nothing to say"
    local: bool = False  # made in the local stand-in while Redis is down (weixin/local_dedupe.py)
    behind: bool = False  # made in local memory and written to Redis behind (weixin/write_behind.py)

    @property
    def label(self) -> str:
        return self.outcome.value + ("-local" if self.local else "") + ("-behind" if self.behind else "")


class ScriptRunner:
    """Runs one Lua script on a dedicated connection per thread. The claim is on every message's path,
    and redis-py's client adds CPU to every command (pool checkout with a poll, retry wrapper,
    observability hooks) that outweighs what the command itself costs here.

    The connection is taken from the pool but never returned, so the pool's own check after a fork does
    not cover it: each is tagged with the pid that opened it, and a forked child (a uWSGI worker, when
    the master used the cache) opens its own rather than write on its parent's socket."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._local = threading.local()

    def _connection(self) -> redis.connection.AbstractConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.pid != os.getpid():
            # The parent's connection is left alone (closing it here would shut the parent's socket).
            connection = self._local.connection = self.client.connection_pool.make_connection()
            self._local.pid = os.getpid()
        return connection

    def run(self, keys: list[str], args: list[Any]) -> Any:
        connection = self._connection()
        try:
            return self._run_on(connection, keys, args)
        except redis.ConnectionError:
            # A connection left over from before a Redis restart fails on first use; unlike redis-py's
            # pool, nothing checked it. The command never reached the new server: retry once on a new one.
            connection.disconnect()
            try:
                return self._run_on(connection, keys, args)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                connection.disconnect()
                raise
        except (redis.TimeoutError, OSError):
            connection.disconnect()
            raise

    def _run_on(self, connection: redis.connection.AbstractConnection, keys: list[str], args: list[Any]) -> Any:
        try:
            connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            return connection.read_response()
        except redis.exceptions.NoScriptError:  # a restarted Redis forgot it: load it once, try again
            connection.send_command("SCRIPT", "LOAD", self.source)
            connection.read_response()
            connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            return connection.read_response()


def _encode(reply: str | None) -> bytes:
    return NOTHING if reply is None else reply.encode("utf-8")


class RetryCache:
    """claim() before handling, store() after; a Redis failure degrades to "no dedupe", never an error."""

    def __init__(
        self,
        client: redis.Redis,
        lease_seconds: float = 10.0,
        reply_ttl: int = REPLY_TTL_SECONDS,
        wait_seconds: float = 1.0,
        poll_seconds: float = 0.05,
        fallback: LocalClaims | None = None,
    ) -> None:
        self.client = client
        self.fallback = fallback
        self.lease_ms = int(lease_seconds * 1000)
        self.reply_ttl = reply_ttl
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._down_until = 0.0
        self._claim_script = ScriptRunner(client, CLAIM_SCRIPT)
        self.write_behind = RedisWriteBehind(client, self._keep_locally)
        self._takeover_script = ScriptRunner(client, TAKEOVER_SCRIPT)

    def _redis_failed(self, error: Exception) -> None:
        if time.monotonic() >= self._down_until:
            where = "in this server's memory" if self.fallback is not None else "off"
            log.warning(
                "Redis unreachable (%s); dedupe %s for the next %ss", type(error).__name__, where, REDIS_BACKOFF_SECONDS
            )
        self._down_until = time.monotonic() + REDIS_BACKOFF_SECONDS

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def claim(self, key: str, request: RequestFingerprint | None = None) -> Claim:
        """Claim `key` for handling (store() the reply after); with `request`, also refuse a signed query
        string replayed with another body. One round trip to Redis in the common case."""
        return self._claim(key, request, pending_marker(), self.lease_ms)

    def claim_with_reply(self, key: str, reply: str | None, request: RequestFingerprint | None = None) -> Claim:
        """Claim `key` and store its finished reply at once: FIRST means `reply` is now the answer for
        the retries; DONE carries the reply an earlier delivery stored."""
        return self._claim(key, request, _encode(reply), self.reply_ttl * 1000)

    def _claim(self, key: str, request: RequestFingerprint | None, value: bytes, ttl_ms: int) -> Claim:
        if not self._redis_usable():
            return self._claim_locally(key, value, ttl_ms, request)
        held_here = False
        if self.fallback is not None:
            # Another worker of this server may have claimed it fresh, its claim still queued for Redis:
            # only this server's memory knows, so it is asked first (a few µs, no system call).
            held_here, other = self._hold_here(key, value, request)
            if other is not None:
                return other
        try:
            if request is None:
                keys, args = claim_entry(key, value, ttl_ms)
            else:
                keys, args = claim_entry(key, value, ttl_ms, request.key, request.body_digest, request.ttl)
            [result] = self._claim_script.run(keys, args)
            if result == 1:
                return Claim(Outcome.FIRST, key)
            if result == -1:
                return Claim(Outcome.REPLAYED, key)
            claim = self._await_first(key, result or None)  # 0: the key vanished between SET NX and GET
            if held_here and claim.outcome is Outcome.DONE:  # for this server's workers waiting on our claim
                self.fallback.store(key, _encode(claim.reply), LOCAL_SECONDS)
            return claim
        except (redis.RedisError, OSError) as error:
            self._redis_failed(error)
            if held_here:  # ours here already: make it last as long as a claim made while Redis is down
                if request is not None:
                    self.fallback.store(request.key, request.body_digest.encode(), request.ttl)
                self.fallback.store(key, value, max(1, ttl_ms // 1000))
                return Claim(Outcome.FIRST, key, local=True)
            return self._claim_locally(key, value, ttl_ms, request)

    def _hold_here(self, key: str, value: bytes, request: RequestFingerprint | None) -> tuple[bool, Claim | None]:
        """Take the claim in this server's memory: (True, None) when it is now ours; (False, None) when the
        memory cannot hold it (Redis alone decides); (False, claim) with the outcome of another worker's
        claim of the same message here (waited for like a claim found in Redis)."""
        if request is not None:
            digest = request.body_digest.encode()
            seen = self.fallback.claim(request.key, digest, LOCAL_SECONDS)
            if seen and seen != digest:
                return False, Claim(Outcome.REPLAYED, key, local=True)
        existing = self.fallback.claim(key, value, LOCAL_SECONDS)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if existing is None:
                return True, None
            if existing == b"":
                return False, None
            if not existing.startswith(PENDING):
                return False, Claim(Outcome.DONE, key, None if existing == NOTHING else existing.decode("utf-8"),
                                    local=True)
            if handler_is_dead(existing):
                # The worker that claimed it here died (before or after its claim reached Redis): this
                # delivery takes over here, and Redis, asked next, settles it with any other server.
                self.fallback.store(key, value, LOCAL_SECONDS)
                return True, None
            if time.monotonic() >= deadline:
                return False, Claim(Outcome.IN_PROGRESS, key, local=True)
            time.sleep(self.poll_seconds)
            existing = self.fallback.peek(key)
            if existing is None:  # its local copy ran out (it reached Redis long ago): claim again
                existing = self.fallback.claim(key, value, LOCAL_SECONDS)

    def claim_fresh(self, key: str, request: RequestFingerprint | None = None) -> Claim:
        """claim() for a delivery too fresh to have a predecessor (weixin/write_behind.py): in this server's
        memory, written to Redis behind; store(..., behind=True) the reply after."""
        return self._claim_fresh(key, pending_marker(), self.lease_ms / 1000, request,
                                 lambda: self.claim(key, request))

    def claim_fresh_with_reply(self, key: str, reply: str | None, request: RequestFingerprint | None = None) -> Claim:
        """claim_with_reply() for a delivery too fresh to have a predecessor, the same way."""
        return self._claim_fresh(key, _encode(reply), self.reply_ttl, request,
                                 lambda: self.claim_with_reply(key, reply, request))

    def _claim_fresh(self, key: str, value: bytes, ttl: float, request: RequestFingerprint | None,
                     synchronously: Callable[[], Claim]) -> Claim:
        """The local claim, queued for Redis; the synchronous claim when there is no local memory or it is
        full (it cannot store the claim)."""
        if self.fallback is None or not self._redis_usable():
            return synchronously()
        held_here, other = self._hold_here(key, value, request)
        if other is not None:
            return other
        if not held_here:
            return synchronously()
        self.write_behind.put(self._entry(key, value, ttl, request, claim=True))
        return Claim(Outcome.FIRST, key, behind=True)

    @staticmethod
    def _entry(key: str, value: bytes, ttl: float, request: RequestFingerprint | None, claim: bool) -> Entry:
        now = time.monotonic()
        if request is None:
            return Entry(key, value, now + ttl, claim=claim)
        return Entry(key, value, now + ttl, claim=claim, fingerprint_key=request.key,
                     body_digest=request.body_digest, fingerprint_expires=now + request.ttl)

    def _keep_locally(self, batch: list[Entry]) -> None:
        """A batch Redis did not take: keep it in local memory for its whole lifetime, where the Redis-down
        path looks, until a later flush gets it to Redis."""
        if self.fallback is None:
            return
        now = time.monotonic()
        for entry in batch:
            if entry.fingerprint_key:
                self.fallback.store(entry.fingerprint_key, entry.body_digest.encode(),
                                    max(1, int(entry.fingerprint_expires - now)))
            self.fallback.store(entry.key, entry.value, max(1, int(entry.expires - now)))

    def _claim_locally(self, key: str, value: bytes, ttl_ms: int, request: RequestFingerprint | None) -> Claim:
        """While Redis is down: the same claim and replay check in this server's shared memory
        (weixin/local_dedupe.py). A fingerprint the stand-in cannot store (it is full) is not checked: refusing
        would drop WeChat's own pushes."""
        if self.fallback is None:
            return Claim(Outcome.UNAVAILABLE, key)
        if request is not None:
            digest = request.body_digest.encode()
            seen = self.fallback.claim(request.key, digest, request.ttl)
            if seen and seen != digest:
                return Claim(Outcome.REPLAYED, key, local=True)
        existing = self.fallback.claim(key, value, max(1, ttl_ms // 1000))
        if existing is None:
            return Claim(Outcome.FIRST, key, local=True)
        if existing.startswith(PENDING):
            return Claim(Outcome.IN_PROGRESS, key, local=True)
        if not existing:  # the stand-in could not store it either
            return Claim(Outcome.UNAVAILABLE, key)
        return Claim(Outcome.DONE, key, None if existing == NOTHING else existing.decode("utf-8"), local=True)

    def _await_first(self, key: str, value: bytes | None) -> Claim:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if value is None:
                # The first delivery died before storing a reply and its lease ran out: take over.
                if self.client.set(key, pending_marker(), nx=True, px=self.lease_ms):
                    return Claim(Outcome.FIRST, key)
                value = self.client.get(key)
                continue
            if value.startswith(PENDING) and handler_is_dead(value):
                # The process handling it died (a killed or harakiri'd uWSGI worker on this host): WeChat's
                # retry takes over at once rather than waiting out the lease and answering `success`.
                if self._takeover_script.run([key], [value, pending_marker(), self.lease_ms]) == 1:
                    log.warning("the process handling %s died; this retry handles the message", key)
                    return Claim(Outcome.FIRST, key)
                value = self.client.get(key)
                continue
            if not value.startswith(PENDING):
                reply = None if value == NOTHING else value.decode("utf-8")
                return Claim(Outcome.DONE, key, reply)
            if time.monotonic() >= deadline:
                return Claim(Outcome.IN_PROGRESS, key)
            time.sleep(self.poll_seconds)
            value = self.client.get(key)

    def store(self, key: str, reply: str | None, local: bool = False, behind: bool = False) -> None:
        """Remember the reply (plaintext XML, before encryption) for the retries, where it was claimed."""
        if behind and self.fallback is not None:
            self.fallback.store(key, _encode(reply), LOCAL_SECONDS)
            self.write_behind.put(Entry(key, _encode(reply), time.monotonic() + self.reply_ttl, claim=False))
            return
        if local or not self._redis_usable():
            if self.fallback is not None:
                self.fallback.store(key, _encode(reply), self.reply_ttl)
            return
        if self.fallback is not None:  # for this server's workers waiting on the claim here (_hold_here)
            self.fallback.store(key, _encode(reply), LOCAL_SECONDS)
        try:
            self.client.set(key, _encode(reply), ex=self.reply_ttl)
        except redis.RedisError as error:
            self._redis_failed(error)
