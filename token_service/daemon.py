"""The refresh loop: one leader (by a Redis lease) keeps the access_token and the jsapi_ticket fresh
in Redis, answers consumers' compare-and-refresh requests, and applies the error policy."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from dataclasses import dataclass

import redis

from token_service import policy
from token_service.settings import TokenSettings
from token_service.store import ACCESS_TOKEN, JSAPI_TICKET, Credential, TokenStore, fingerprint, masked
from token_service.upstream import Grant, UpstreamError, WeChatUpstream

log = logging.getLogger("token_service")

# The longest the loop blocks: bounds how late a SIGTERM or a lost lease is noticed.
MAX_BLOCK_SECONDS = 0.5


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


@dataclass
class _KindState:
    """Scheduling state of one credential (access_token or jsapi_ticket) in the leader."""

    due_at: float = 0.0
    failures: int = 0
    stopped_errcode: int | None = None  # set while a STOP error waits for a human


class TokenDaemon:
    """Run with `run()` (blocks) and stop with `stop()` (from a signal handler or another thread)."""

    def __init__(
        self,
        settings: TokenSettings,
        client: redis.Redis,
        upstream: WeChatUpstream | None = None,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        # The AppSecret signs what this daemon stores, so that no other writer's token is adopted.
        self.store = TokenStore(client, settings.appid, secret=settings.appsecret)
        self.upstream = upstream or WeChatUpstream(
            settings.api_base, settings.appid, settings.appsecret, timeout=settings.http_timeout
        )
        self.owner = owner or new_owner_id()
        self.rng = rng or random.Random()
        self._stopping = threading.Event()
        self._lease_lost = threading.Event()
        self._leader = False
        self._renewer: threading.Thread | None = None
        self._states = {ACCESS_TOKEN: _KindState(), JSAPI_TICKET: _KindState()}
        self._redis_failing = False

    # lifecycle --------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    @property
    def is_leader(self) -> bool:
        return self._leader

    def run(self) -> int:
        log.info(
            "token daemon %s started for appid %s (source=%s, api=%s)",
            self.owner, self.settings.appid, self.settings.source, self.settings.api_base,
        )
        try:
            while not self._stopping.is_set():
                try:
                    self._step()
                    if self._redis_failing:
                        log.info("Redis is reachable again")
                        self._redis_failing = False
                except redis.RedisError as error:
                    if not self._redis_failing:
                        log.error("Redis error (%s); retrying every second", type(error).__name__)
                        self._redis_failing = True
                    self._stopping.wait(1.0)
        finally:
            self._resign()
        log.info("token daemon %s stopped", self.owner)
        return 0

    def _step(self) -> None:
        if self._lease_lost.is_set():
            log.warning("lost the leader lease; becoming a follower")
            self._leader = False
            self._lease_lost.clear()
        if not self._leader:
            if self.store.acquire_lock(self.owner, self.settings.lock_lease):
                self._become_leader()
            else:
                self._stopping.wait(min(self.settings.lock_lease / 3, 1.0))
                return
        self._replace_unvouched()
        now = time.time()
        if now >= self._states[ACCESS_TOKEN].due_at:
            self._refresh_token(force=False)
        if self.settings.jsapi_ticket and time.time() >= self._states[JSAPI_TICKET].due_at:
            self._refresh_ticket()
        wake_at = min(state.due_at for state in self._active_states())
        timeout = min(max(wake_at - time.time(), 0.01), MAX_BLOCK_SECONDS)
        reports = self.store.wait_refresh_requests(timeout)
        if reports and self._leader and not self._lease_lost.is_set():
            self._handle_reports(reports)

    def _active_kinds(self) -> tuple[str, ...]:
        return (ACCESS_TOKEN, JSAPI_TICKET) if self.settings.jsapi_ticket else (ACCESS_TOKEN,)

    def _active_states(self) -> list[_KindState]:
        return [self._states[kind] for kind in self._active_kinds()]

    def _vouched(self, kind: str) -> Credential | None:
        """The stored credential if a daemon of this account wrote it, else None."""
        current = self.store.read(kind)
        return current if current is not None and current.vouched else None

    def _replace_unvouched(self) -> None:
        """A value in Redis that no daemon of this account wrote (set by hand, or planted by someone
        with Redis access) is never served on our word: fetch our own over it at once, and if WeChat
        gives nothing, remove it, since no token is safer than one that may belong to someone else.
        Checked on every loop (one Redis round trip per credential), so consumers, who read the
        value key only, can be handed such a value for at most a loop and a WeChat call."""
        for kind in self._active_kinds():
            found = self.store.read(kind)
            if found is None or found.vouched:
                continue
            log.warning(
                "the %s in Redis key %s was not written by a token daemon of this account (its metadata "
                "is missing or does not match); not using it, fetching a fresh one from WeChat",
                kind, self.store.key(kind),
            )
            state = self._states[kind]
            if state.failures == 0 and state.stopped_errcode is None:  # not while WeChat is failing
                if kind == ACCESS_TOKEN:
                    self._refresh_token(force=False)
                else:
                    self._refresh_ticket()
            again = self.store.read(kind)
            if (
                again is not None and not again.vouched and again.value == found.value
                and self.store.discard(kind, self.owner, found.value)
            ):
                log.warning("removed that %s: consumers get none until WeChat gives this daemon one", kind)

    def _become_leader(self) -> None:
        self._leader = True
        self._lease_lost.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        self._renewer.start()
        # Re-check after winning: a valid credential in Redis is reused, never re-fetched.
        for kind in (ACCESS_TOKEN, JSAPI_TICKET):
            state = self._states[kind] = _KindState()
            current = self._vouched(kind)  # never a value another writer put there
            if current is not None and current.remaining() > self.settings.expiry_margin:
                state.due_at = policy.refresh_time(
                    current.expires_at, self.settings.overlap, self.settings.expiry_margin, self.rng
                )
                if kind == ACCESS_TOKEN or self.settings.jsapi_ticket:
                    log.info(
                        "leader %s: reusing stored %s %s (expires in %.1fs)",
                        self.owner, kind, masked(current.value), current.remaining(),
                    )
        log.info("%s is now the leader", self.owner)

    def _renew_loop(self) -> None:
        interval = self.settings.lock_lease / 3
        while not self._stopping.wait(interval):
            if not self._leader:
                return
            try:
                if not self.store.renew_lock(self.owner, self.settings.lock_lease):
                    self._lease_lost.set()
                    return
            except redis.RedisError:
                continue  # the main loop logs Redis trouble; the lease may still be ours

    def _resign(self) -> None:
        if not self._leader:
            return
        self._leader = False
        try:
            if self.store.release_lock(self.owner):
                log.info("released the leader lock")
        except redis.RedisError as error:
            log.warning("could not release the lock (%s); it expires by itself", type(error).__name__)

    # access_token ---------------------------------------------------------------------------
    def _fetch_token(self, force: bool) -> Grant:
        if self.settings.source == "classic":
            return self.upstream.classic_token()
        return self.upstream.stable_token(force_refresh=force)

    def _refresh_token(self, force: bool, replacing: str | None = None) -> bool:
        """Fetch and store a new access_token; True if one was stored."""
        state = self._states[ACCESS_TOKEN]
        current = self._vouched(ACCESS_TOKEN)
        if not force and current is not None and current.remaining() > self.settings.overlap:
            # Someone (a previous leader) already refreshed: adopt its schedule instead of calling WeChat.
            state.due_at = policy.refresh_time(
                current.expires_at, self.settings.overlap, self.settings.expiry_margin, self.rng
            )
            return False
        if force and replacing is not None and (current is None or fingerprint(current.value) != replacing):
            return False
        started = time.time()
        try:
            grant = self._fetch_token(force)
        except UpstreamError as error:
            if force and error.errcode == 45009:
                # Only the forced-refresh quota is used up; the normal schedule must go on.
                log.warning("forced refresh refused by WeChat (45009: daily force_refresh quota used up)")
                self.store.record_error(ACCESS_TOKEN, 45009, f"forced refresh refused: {error.errmsg}")
                return False
            self._on_error(ACCESS_TOKEN, error, current)
            return False
        stored = self._store(ACCESS_TOKEN, grant, started, current)
        if stored and current is not None and grant.value == current.value and not force:
            # WeChat returned the same token (called before its rotation window): try again a bit later
            # instead of spinning, and before the copy just stored expires (_store's schedule).
            state.due_at = min(
                time.time() + max(self.settings.backoff_base, self.settings.overlap / 10), state.due_at
            )
        return stored

    def _store(self, kind: str, grant: Grant, started: float, previous: Credential | None) -> bool:
        state = self._states[kind]
        credential = Credential(grant.value, started, started + grant.expires_in, grant.source)
        margin = policy.storage_margin(credential.remaining(), self.settings.expiry_margin)
        if not self.store.write(kind, self.owner, credential, margin):
            if self.store.lock_holder() != self.owner:
                log.warning("not storing the new %s: this daemon is no longer the leader", kind)
                self._lease_lost.set()
            else:
                log.error("WeChat returned a %s that expires in %.1fs; not stored", kind, grant.expires_in)
                state.due_at = time.time() + policy.backoff_delay(
                    state.failures, self.settings.backoff_base, self.settings.backoff_cap, self.rng
                )
                state.failures += 1
            return False
        if state.failures or state.stopped_errcode is not None:
            log.info("%s refresh works again", kind)
        state.failures = 0
        state.stopped_errcode = None
        now = time.time()
        state.due_at = policy.refresh_time(
            credential.expires_at, self.settings.overlap, self.settings.expiry_margin, self.rng,
            now=now, min_delay=self.settings.backoff_base,
        )
        log.info(
            "stored %s %s from %s (replaces %s), expires in %.0fs, next refresh in %.1fs",
            kind, masked(grant.value), grant.source, masked(previous.value if previous else None),
            grant.expires_in, state.due_at - now,
        )
        if margin < self.settings.expiry_margin:
            log.info(
                "WeChat's %s has only %.0fs of life left (less than twice the %gs margin): served for "
                "%.1fs, asking WeChat again in %.1fs for a fresh one",
                kind, grant.expires_in, self.settings.expiry_margin, credential.remaining(now) - margin,
                state.due_at - now,
            )
        return True

    def _handle_reports(self, reported: list[str]) -> None:
        """Compare-and-refresh: only a report of the token stored right now causes a refresh, so N
        consumers reporting the same token cause one refresh and late reports of an old token none."""
        current = self._vouched(ACCESS_TOKEN)
        if current is None:
            self._states[ACCESS_TOKEN].due_at = 0
            return
        current_fp = fingerprint(current.value)
        if current_fp not in reported:
            log.debug("ignored %d report(s) of tokens that are no longer stored", len(reported))
            return
        state = self._states[ACCESS_TOKEN]
        if state.stopped_errcode is not None or state.failures:
            log.info("refresh requested for %s but WeChat is failing; see status", masked(current.value))
            return
        now = time.time()
        refusal = policy.forced_refresh_refusal(
            self.store.forced_times(now), now, self.settings.force_daily_limit, self.settings.force_spacing
        )
        if refusal is not None:
            log.warning("refresh requested for %s, not forced: %s", masked(current.value), refusal)
            self.store.record_error(ACCESS_TOKEN, None, f"compare-and-refresh refused: {refusal}")
            return
        log.info("%d consumer report(s): %s is rejected by WeChat; forcing a refresh", len(reported),
                 masked(current.value))
        self.store.record_forced(now)
        self._refresh_token(force=True, replacing=current_fp)

    # jsapi_ticket ---------------------------------------------------------------------------
    def _refresh_ticket(self) -> None:
        state = self._states[JSAPI_TICKET]
        current = self._vouched(JSAPI_TICKET)
        if current is not None and current.remaining() > self.settings.overlap:
            state.due_at = policy.refresh_time(
                current.expires_at, self.settings.overlap, self.settings.expiry_margin, self.rng
            )
            return
        stored_token = self._vouched(ACCESS_TOKEN)
        token = stored_token.value if stored_token is not None else None
        if token is None:
            state.due_at = self._states[ACCESS_TOKEN].due_at + 0.05  # right after the next token
            return
        started = time.time()
        try:
            grant = self.upstream.jsapi_ticket(token)
        except UpstreamError as error:
            if error.errcode in policy.INVALID_TOKEN_ERRCODES:
                log.warning("getticket says the stored access_token %s is invalid", masked(token))
                state.due_at = time.time() + self.settings.backoff_base
                self._handle_reports([fingerprint(token)])
                return
            self._on_error(JSAPI_TICKET, error, current)
            return
        self._store(JSAPI_TICKET, grant, started, current)

    # errors ---------------------------------------------------------------------------------
    def _on_error(self, kind: str, error: UpstreamError, current: Credential | None) -> None:
        state = self._states[kind]
        now = time.time()
        action = policy.error_action(error.errcode, now, self.settings.stop_pause)
        serving = (
            f"still serving {masked(current.value)} until it expires in {current.remaining():.0f}s"
            if current is not None and current.remaining() > 0
            else f"no valid {kind} is stored"
        )
        status_text = f"errcode {error.errcode}: {error.errmsg} — {action.advice}"
        self.store.record_error(kind, error.errcode, status_text, now)
        if action.kind == policy.STOP:
            if state.stopped_errcode != error.errcode:
                # The one actionable line: repeating it on every retry would bury it.
                log.error(
                    "%s refresh stopped: WeChat %s answered errcode %s (%s). FIX: %s. %s; next try in %.0fs.",
                    kind, error.endpoint, error.errcode, error.errmsg, action.advice, serving, action.pause,
                )
            else:
                log.debug("%s refresh still failing with errcode %s", kind, error.errcode)
            state.stopped_errcode = error.errcode
            state.due_at = now + action.pause
            return
        delay = policy.backoff_delay(
            state.failures, self.settings.backoff_base, self.settings.backoff_cap, self.rng
        )
        state.failures += 1
        state.stopped_errcode = None
        log.warning(
            "%s refresh failed (attempt %d): %s errcode %s %s; %s; retrying in %.1fs",
            kind, state.failures, error.endpoint, error.errcode, error.errmsg, serving, delay,
        )
        state.due_at = now + delay
